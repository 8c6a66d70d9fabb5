"""How the gateway (and services) call a service deployment: one awaited handle call.

A service raises ``ProblemError``; Ray delivers it wrapped in ``RayTaskError``. ``call``
unwraps it so the caller sees the service's own error class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from serve.common.errors import ProblemError, ServiceUnavailable


class ServiceClient:
    def __init__(self, name: str, handle: Any) -> None:
        self.name = name
        self.handle = handle

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        from ray.exceptions import RayActorError, RayTaskError

        try:
            return await getattr(self.handle, method).remote(*args, **kwargs)
        except RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, ProblemError):
                raise cause from None
            raise
        except RayActorError as exc:
            raise ServiceUnavailable(f"the {self.name} service is restarting; retry") from exc


@dataclass(frozen=True)
class Services:
    """Every service the gateway reaches."""

    user: ServiceClient
    event: ServiceClient
    payment: ServiceClient
    notification: ServiceClient
    media: ServiceClient
    analytics: ServiceClient

    def items(self) -> list[tuple[str, ServiceClient]]:
        return [(name, getattr(self, name)) for name in
                ("user", "event", "payment", "notification", "media", "analytics")]

"""How the gateway (and services) call a service deployment: one awaited handle call.

A service raises ``ProblemError``; Ray delivers it wrapped in ``RayTaskError``. ``call``
unwraps it so the caller sees the service's own error class. A service that found no database
connection (pool timeout, server full) is reported as 503 with ``Retry-After``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from serve.common.errors import ProblemError, ServiceUnavailable
from storage.engine import is_overload


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
            if cause is not None and is_overload(cause):
                raise ServiceUnavailable(f"the {self.name} service is overloaded; retry",
                                         slug="overloaded", retry_after=1) from None
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

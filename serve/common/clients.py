"""How one deployment calls another: one awaited handle call, behind a typed client.

Each service publishes one client class (``serve/<svc>/client.py``, a ``ClientBase``) whose
typed methods wrap one handle call each; callers (the gateway's routes, other services) use
those, so the method names of a deployment appear as strings only in its client.

``ServiceClient`` is the transport under every client. A service raises ``ProblemError``; Ray
delivers it wrapped in ``RayTaskError``, and ``call`` unwraps it so the caller sees the
service's own error class. A service that found no database connection (pool timeout, server
full) is reported as 503 ``overloaded`` with ``Retry-After``; a call that gets no answer
within the client's timeout is a 504 ``upstream-timeout``; a value the database refuses (SQLSTATE
class 22: a NUL character, a malformed id) is a 422 ``invalid-value``, its transaction rolled
back (the call may still take effect: the
operations that create something take an idempotency key, so a retry does not do it twice).
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from serve.common.context import RequestContext
from serve.common.errors import ProblemError, ServiceUnavailable, Unprocessable, UpstreamTimeout
from storage.engine import is_bad_value, is_overload

DEFAULT_TIMEOUT_SECONDS = 30.0


class Caller(Protocol):
    """What a typed client needs from its transport (``ServiceClient``, or a test double)."""

    name: str

    async def call(self, method: str, *args: Any) -> Any: ...


class ServiceClient:
    """Calls methods of one deployment through its handle, unwrapping the service's errors."""

    def __init__(self, name: str, handle: Any,
                 timeout: float | None = DEFAULT_TIMEOUT_SECONDS) -> None:
        self.name = name
        self.handle = handle
        self.timeout = timeout

    async def call(self, method: str, *args: Any) -> Any:
        from ray.exceptions import RayActorError, RayTaskError

        try:
            return await asyncio.wait_for(getattr(self.handle, method).remote(*args),
                                          self.timeout)
        except RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, ProblemError):
                raise cause from None
            if cause is not None and is_overload(cause):
                raise ServiceUnavailable(f"the {self.name} service is overloaded; retry",
                                         slug="overloaded", retry_after=1) from None
            if cause is not None and is_bad_value(cause):
                raise Unprocessable("the input holds a value that cannot be stored (a NUL "
                                    "character, a malformed id or number, a value out of "
                                    "range); nothing was changed", slug="invalid-value") from None
            raise
        except RayActorError as exc:
            raise ServiceUnavailable(f"the {self.name} service is restarting; retry") from exc
        except TimeoutError:
            raise UpstreamTimeout(f"the {self.name} service did not answer within "
                                  f"{self.timeout:g}s; retry", retry_after=1) from None


class ClientBase:
    """Methods every service deployment has (``serve.common.service.ServiceBase``)."""

    def __init__(self, transport: Caller) -> None:
        self.transport = transport

    @property
    def name(self) -> str:
        return self.transport.name

    async def health(self, ctx: RequestContext) -> dict[str, Any]:
        result: dict[str, Any] = await self.transport.call("health", ctx)
        return result

    async def messaging_status(self, ctx: RequestContext) -> dict[str, Any]:
        result: dict[str, Any] = await self.transport.call("messaging_status", ctx)
        return result

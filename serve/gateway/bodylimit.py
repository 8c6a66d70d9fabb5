"""The gateway reads at most ``AFISHA_MAX_REQUEST_BODY_BYTES`` of a request body.

A declared ``Content-Length`` past the limit is answered 413 (problem+json) before anything is
read; a body without one (chunked) is counted as it arrives: the read that passes the limit is
answered with the same 413 and the handler sees the client leave, so none acts on a partial
body. Uploads (``/api/v1/media/upload``) are exempt: the media route enforces its own, larger
limits while it streams.
"""

from __future__ import annotations

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.common.errors import PayloadTooLarge
from serve.common.problems import render

EXEMPT = ("/api/v1/media/upload",)


class BodyLimit:
    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(EXEMPT):
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope.get("headers") or [] if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        seen = 0
        over = False

        async def counted() -> Message:
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:  # answer now; the handler sees the client leave
                    over = True
                    await self._refuse(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def unless_refused(message: Message) -> None:
            if not over:
                await send(message)

        try:
            await self.app(scope, counted, unless_refused)
        except Exception:
            if not over:
                raise

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = PayloadTooLarge(f"the request body is larger than {self.limit} bytes",
                                limit=self.limit)
        await JSONResponse(render(error, scope["path"]), status_code=413,
                           media_type="application/problem+json")(scope, receive, send)

"""A NUL character in the path or the query string is refused with a 422 problem before any
route sees it: no text column of PostgreSQL can hold one, and no id, cursor or filter of the
API contains one. (NUL inside a JSON body is refused where it would be stored:
``storage.engine.is_bad_value``.)"""

from __future__ import annotations

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from serve.common.errors import Unprocessable
from serve.common.problems import render


def holds_nul(scope: Scope) -> bool:
    query: bytes = scope.get("query_string") or b""
    return b"%00" in query or b"\x00" in query or "\x00" in scope.get("path", "")


class RefuseNul:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not holds_nul(scope):
            await self.app(scope, receive, send)
            return
        error = Unprocessable("the path or query string holds a NUL character, which no "
                              "parameter may contain", slug="invalid-value")
        await JSONResponse(render(error, scope["path"]), status_code=422,
                           media_type="application/problem+json")(scope, receive, send)

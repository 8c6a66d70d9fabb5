"""The OpenAPI document says what errors look like: every operation documents its error answers
as RFC 9457 ``application/problem+json`` (the ``Problem`` schema), as the gateway sends them."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Problem",
    "description": "RFC 9457 problem details; extensions (errors, limit, retry_after...) vary",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "https://afisha.dev/problems/<slug>"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
    "additionalProperties": True,
}
# What any operation may answer besides its success (authentication, access, limits, load).
ERRORS = {"400": "Bad request", "401": "Authentication required", "403": "Forbidden",
          "404": "Not found", "409": "Conflict", "413": "Content too large",
          "422": "Unprocessable content", "429": "Too many requests",
          "503": "Service unavailable", "504": "Gateway timeout"}
PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version,
                                   description=app.description, routes=app.routes)
            document.setdefault("components", {}).setdefault("schemas", {})["Problem"] = \
                PROBLEM_SCHEMA
            for path in document.get("paths", {}).values():
                for operation in path.values():
                    responses = operation.setdefault("responses", {})
                    for code, title in ERRORS.items():
                        responses[code] = {"description": title, "content": PROBLEM}
            for unused in ("HTTPValidationError", "ValidationError"):
                document["components"]["schemas"].pop(unused, None)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

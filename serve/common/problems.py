"""Errors as RFC 9457 problems: the one table from error kind to HTTP status and title.

The gateway renders every ``ProblemError`` with ``render``; the payment service's idempotency
store keeps a failed answer as the problem it was and raises it again on a replay.
"""

from __future__ import annotations

from typing import Any

from serve.common.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    ProblemError,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    Unprocessable,
    UnsupportedMediaType,
    UpstreamTimeout,
)

PROBLEM_BASE = "https://afisha.dev/problems/"

HTTP: dict[type[ProblemError], tuple[int, str]] = {
    BadRequest: (400, "Bad request"),
    Unauthorized: (401, "Authentication required"),
    Forbidden: (403, "Forbidden"),
    NotFound: (404, "Not found"),
    Conflict: (409, "Conflict"),
    PayloadTooLarge: (413, "Content too large"),
    UnsupportedMediaType: (415, "Unsupported media type"),
    Unprocessable: (422, "Unprocessable content"),
    TooManyRequests: (429, "Too many requests"),
    ServiceUnavailable: (503, "Service unavailable"),
    UpstreamTimeout: (504, "Gateway timeout"),
}


def status_of(error: ProblemError | type[ProblemError]) -> tuple[int, str]:
    """HTTP status and title of an error: its nearest kind in ``HTTP``.

    An error class outside the table's hierarchy may declare ``status`` and ``title`` itself.
    """
    cls = error if isinstance(error, type) else type(error)
    for kind in cls.__mro__:
        if kind in HTTP:
            return HTTP[kind]
    return getattr(cls, "status", 400), getattr(cls, "title", "Bad request")


def kind_of(status: int) -> type[ProblemError]:
    """The error kind answered with ``status`` (for replaying a recorded problem)."""
    return next((kind for kind, (code, _) in HTTP.items() if code == status), ProblemError)


def problem(status: int, slug: str, title: str, detail: str, instance: str | None = None,
            **extensions: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": PROBLEM_BASE + slug, "title": title, "status": status,
                            "detail": detail}
    if instance:
        body["instance"] = instance
    body.update(extensions)
    return body


def response_headers(error: ProblemError) -> dict[str, str]:
    """HTTP headers of an error's answer: ``Retry-After`` when it says when to retry, and a
    429 is never cached."""
    headers: dict[str, str] = {}
    if "retry_after" in error.extensions:
        headers["Retry-After"] = str(error.extensions["retry_after"])
    if status_of(error)[0] == 429:
        headers["Cache-Control"] = "no-store"
    return headers


def render(error: ProblemError, instance: str | None = None) -> dict[str, Any]:
    """The problem+json body of an error."""
    status, title = status_of(error)
    return problem(status, error.slug, title, error.detail, instance, **error.extensions)

"""The error hierarchy every service raises; the gateway renders it as RFC 9457 problem+json.

Standard library only, so domain modules may raise these too. Errors cross Ray handles by
pickling, hence ``__reduce__``.
"""

from __future__ import annotations

from typing import Any

PROBLEM_BASE = "https://afisha.dev/problems/"


class ProblemError(Exception):
    """Base of every error that is the client's to see."""

    status: int = 400
    slug: str = "bad-request"
    title: str = "Bad request"

    def __init__(self, detail: str, *, slug: str | None = None, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        if slug is not None:
            self.slug = slug
        self.extensions = extensions

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.detail, self.slug, self.extensions))

    @property
    def type_uri(self) -> str:
        return PROBLEM_BASE + self.slug

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        return problem(self.status, self.slug, self.title, self.detail, instance, **self.extensions)


def _rebuild(cls: type[ProblemError], detail: str, slug: str, extensions: dict[str, Any]) -> Any:
    return cls(detail, slug=slug, **extensions)


def problem(
    status: int, slug: str, title: str, detail: str, instance: str | None = None, **extensions: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"type": PROBLEM_BASE + slug, "title": title, "status": status,
                            "detail": detail}
    if instance:
        body["instance"] = instance
    body.update(extensions)
    return body


class BadRequest(ProblemError):
    status, slug, title = 400, "bad-request", "Bad request"


class Unauthorized(ProblemError):
    status, slug, title = 401, "unauthorized", "Authentication required"


class Forbidden(ProblemError):
    status, slug, title = 403, "forbidden", "Forbidden"


class NotFound(ProblemError):
    status, slug, title = 404, "not-found", "Not found"


class Conflict(ProblemError):
    status, slug, title = 409, "conflict", "Conflict"


class Unprocessable(ProblemError):
    status, slug, title = 422, "validation-error", "Unprocessable content"


class TooManyRequests(ProblemError):
    status, slug, title = 429, "rate-limited", "Too many requests"


class ServiceUnavailable(ProblemError):
    status, slug, title = 503, "unavailable", "Service unavailable"

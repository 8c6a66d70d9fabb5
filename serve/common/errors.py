"""The errors every service and domain module raises when the client is at fault (or must wait).

Standard library only, and nothing about HTTP: an error is a kind (the class), a ``slug`` that
names the problem type (``sold-out``, ``invite-expired``...), a human ``detail`` and
extensions. ``serve.common.problems`` is the one table from kind to HTTP status and title,
used where answers are rendered as RFC 9457 problem+json. Errors cross Ray handles by
pickling, hence ``__reduce__``.
"""

from __future__ import annotations

from typing import Any


class ProblemError(Exception):
    """Base of every error that is the client's to see."""

    slug: str = "bad-request"

    def __init__(self, detail: str, *, slug: str | None = None, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        if slug is not None:
            self.slug = slug
        self.extensions = extensions

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.detail, self.slug, self.extensions))


def _rebuild(cls: type[ProblemError], detail: str, slug: str, extensions: dict[str, Any]) -> Any:
    return cls(detail, slug=slug, **extensions)


class BadRequest(ProblemError):
    """The request cannot be taken as it is."""

    slug = "bad-request"


class Unauthorized(ProblemError):
    """Who the caller is is unknown (no or a bad credential)."""

    slug = "unauthorized"


class Forbidden(ProblemError):
    """The caller may not do this."""

    slug = "forbidden"


class NotFound(ProblemError):
    """No such thing (or not one the caller may know of)."""

    slug = "not-found"


class Conflict(ProblemError):
    """The current state does not allow it (sold out, already paid, illegal transition...)."""

    slug = "conflict"


class PayloadTooLarge(ProblemError):
    """The request body is larger than the endpoint takes."""

    slug = "payload-too-large"


class UnsupportedMediaType(ProblemError):
    """The content is of a type the endpoint does not take (decided by the content)."""

    slug = "unsupported-media-type"


class Unprocessable(ProblemError):
    """The input breaks a rule of the domain."""

    slug = "validation-error"


class TooManyRequests(ProblemError):
    """The caller has used up a limit for now."""

    slug = "rate-limited"


class ServiceUnavailable(ProblemError):
    """Not now: a dependency is down or overloaded; retry."""

    slug = "unavailable"


class UpstreamTimeout(ProblemError):
    """A service did not answer in time; the request may or may not have taken effect (retry
    with the same ``Idempotency-Key`` where there is one)."""

    slug = "upstream-timeout"

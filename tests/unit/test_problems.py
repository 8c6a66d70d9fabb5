"""The one table from error kind to HTTP status (serve.common.problems)."""

from __future__ import annotations

from typing import ClassVar

import pytest

from serve.common import errors
from serve.common.paging import InvalidCursor
from serve.common.problems import HTTP, kind_of, render, status_of


@pytest.mark.parametrize(("kind", "status"), [
    (errors.BadRequest, 400), (errors.Unauthorized, 401), (errors.Forbidden, 403),
    (errors.NotFound, 404), (errors.Conflict, 409), (errors.Unprocessable, 422),
    (errors.TooManyRequests, 429), (errors.ServiceUnavailable, 503)])
def test_each_kind_has_its_status_and_back(kind: type[errors.ProblemError], status: int) -> None:
    assert status_of(kind("x"))[0] == status
    assert kind_of(status) is kind


def test_a_specific_error_is_answered_with_the_status_of_its_kind() -> None:
    body = render(InvalidCursor("the cursor is not one this API returned"), "/api/v1/events")
    assert body == {"type": "https://afisha.dev/problems/invalid-cursor",
                    "title": "Unprocessable content", "status": 422,
                    "detail": "the cursor is not one this API returned",
                    "instance": "/api/v1/events"}


def test_domain_errors_know_nothing_of_http() -> None:
    for kind in HTTP:
        assert not hasattr(kind("x"), "status")


def test_an_error_outside_the_kinds_may_declare_its_own_status() -> None:
    class Closing(errors.ProblemError):
        status: ClassVar[int] = 503
        title: ClassVar[str] = "Service unavailable"

    assert status_of(Closing("retry")) == (503, "Service unavailable")

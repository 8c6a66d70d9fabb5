"""Which database errors mean "no connection right now" (answered 503 + Retry-After)."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import exc as sa_exc

from storage.engine import is_overload


class DriverError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(("error", "overload"), [
    (sa_exc.TimeoutError("QueuePool limit of size 5 overflow 5 reached"), True),
    (sa_exc.DBAPIError("SELECT 1", {}, DriverError("53300")), True),  # too many connections
    (sa_exc.DBAPIError("SELECT 1", {}, DriverError("57P03")), True),  # cannot connect now
    (asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"), True),
    (sa_exc.IntegrityError("INSERT", {}, DriverError("23505")), False),
    (sa_exc.DBAPIError("SELECT 1", {}, DriverError("42P01")), False),
    (ValueError("not a database error"), False),
])
def test_only_connection_exhaustion_counts_as_overload(error: BaseException,
                                                       overload: bool) -> None:
    assert is_overload(error) is overload

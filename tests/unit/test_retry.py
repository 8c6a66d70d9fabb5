"""The one retry loop (serve.common.retry): attempts, backoff between them, the last error."""

from __future__ import annotations

import pytest

from serve.common.retry import backoff, retry


class Flaky:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"down {self.calls}")
        return "up"


async def test_retries_until_the_operation_succeeds() -> None:
    flaky, seen = Flaky(2), []
    result = await retry(flaky, attempts=5, base=0,
                         on_failure=lambda n, exc: seen.append((n, str(exc))))
    assert result == "up"
    assert seen == [(1, "down 1"), (2, "down 2")]


async def test_after_the_last_attempt_the_last_error_is_raised() -> None:
    flaky, seen = Flaky(10), []
    with pytest.raises(ConnectionError, match="down 3"):
        await retry(flaky, attempts=3, base=0, on_failure=lambda n, _: seen.append(n))
    assert flaky.calls == 3
    assert seen == [1, 2, 3]


def test_sandbox_webhook_delays_keep_their_schedule() -> None:
    assert [backoff(n, 0.25, cap=60.0) for n in (1, 2, 3, 4)] == [0.25, 0.5, 1.0, 2.0]
    assert backoff(20, 0.25, cap=60.0) == 60.0

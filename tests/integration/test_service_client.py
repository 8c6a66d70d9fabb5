"""Errors raised in a Ray actor reach the caller as the service's own problem class."""

from __future__ import annotations

from typing import Any

import pytest

from serve.common.clients import ServiceClient
from serve.common.errors import Conflict, ServiceUnavailable, Unprocessable, UpstreamTimeout
from serve.common.problems import status_of


async def test_problem_errors_cross_the_ray_boundary_intact(ray_session: None) -> None:
    import ray

    @ray.remote(num_cpus=0)
    class Service:
        def reserve(self, quantity: int) -> dict[str, Any]:
            if quantity > 2:
                raise Conflict("only 2 seats left", slug="sold-out", available=2)
            return {"reserved": quantity}

    client = ServiceClient("event", Service.remote())  # type: ignore[attr-defined]
    assert await client.call("reserve", 1) == {"reserved": 1}
    with pytest.raises(Conflict) as caught:
        await client.call("reserve", 5)
    assert caught.value.slug == "sold-out"
    assert caught.value.extensions == {"available": 2}


async def test_a_dead_service_is_reported_as_unavailable(ray_session: None) -> None:
    import ray

    @ray.remote(num_cpus=0, max_restarts=0)
    class Service:
        def ping(self) -> str:
            return "pong"

    actor = Service.remote()  # type: ignore[attr-defined]
    ray.kill(actor)
    with pytest.raises(ServiceUnavailable):
        await ServiceClient("event", actor).call("ping")


async def test_a_service_out_of_database_connections_answers_503(ray_session: None) -> None:
    import ray
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    @ray.remote(num_cpus=0)
    class Service:
        def read(self) -> str:
            raise PoolTimeout("QueuePool limit of size 5 overflow 5 reached")

    with pytest.raises(ServiceUnavailable) as caught:
        await ServiceClient("event", Service.remote()).call("read")  # type: ignore[attr-defined]
    assert caught.value.slug == "overloaded"
    assert caught.value.extensions == {"retry_after": 1}


async def test_a_service_that_does_not_answer_in_time_is_a_gateway_timeout(
        ray_session: None) -> None:
    import asyncio

    import ray

    @ray.remote(num_cpus=0)
    class Service:
        async def slow(self) -> str:
            await asyncio.sleep(5)
            return "late"

    client = ServiceClient("event", Service.remote(), timeout=0.2)  # type: ignore[attr-defined]
    with pytest.raises(UpstreamTimeout) as caught:
        await client.call("slow")
    assert "did not answer within 0.2s" in caught.value.detail
    assert status_of(caught.value) == (504, "Gateway timeout")


@pytest.mark.parametrize("value", ["nul\x00byte", "not-a-uuid"])
async def test_a_value_the_database_refuses_is_a_422(ray_session: None, pg_server: str,
                                                     value: str) -> None:
    import ray

    @ray.remote(num_cpus=0)
    class Service:
        async def find(self, url: str, value: str) -> str:
            import asyncpg

            conn = await asyncpg.connect(url)
            try:
                query = "SELECT $1::text" if "\x00" in value else "SELECT $1::text::uuid"
                return str(await conn.fetchval(query, value))
            finally:
                await conn.close()

    client = ServiceClient("event", Service.remote())  # type: ignore[attr-defined]
    with pytest.raises(Unprocessable) as caught:
        await client.call("find", pg_server, value)
    assert caught.value.slug == "invalid-value"

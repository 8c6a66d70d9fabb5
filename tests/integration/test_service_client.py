"""Errors raised in a Ray actor reach the caller as the service's own problem class."""

from __future__ import annotations

from typing import Any

import pytest

from serve.common.clients import ServiceClient
from serve.common.errors import Conflict, ServiceUnavailable


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

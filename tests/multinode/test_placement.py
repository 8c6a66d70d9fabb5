"""On the three-node cluster: the gateway's replicas and the inventory hosts are on at least two
distinct nodes, and the consumers only on the nodes offering the worker resource."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.multinode.ray_state import by_node, is_host, settled_actors


@pytest.fixture(scope="module")
def actors() -> Iterator[list[dict[str, Any]]]:
    import ray

    ray.init(address=os.environ["AFISHA_E2E_RAY_ADDRESS"], namespace="afisha-placement-test")
    try:
        yield settled_actors(hosts=3)
    finally:
        ray.shutdown()


def test_gateway_replicas_on_distinct_nodes(actors: list[dict[str, Any]]) -> None:
    where = by_node(actors, lambda a: a["ActorClassName"].endswith(":Gateway"))
    print("gateway replicas:", where)
    assert sum(map(len, where.values())) == 2
    assert len(where) == 2


def test_inventory_hosts_on_distinct_nodes(actors: list[dict[str, Any]]) -> None:
    where = by_node(actors, is_host)
    print("inventory hosts:", where)
    assert sum(map(len, where.values())) == 3
    assert len(where) >= 2


def test_consumers_only_on_worker_nodes(actors: list[dict[str, Any]]) -> None:
    consumers = ("PaymentService", "NotificationService", "MediaService", "AnalyticsService")
    placed = [a for a in actors if a["ActorClassName"].split(":")[-1] in consumers]
    print("consumers:", {a["ActorClassName"]: a["Address"]["NodeID"][:8] for a in placed})
    assert len(placed) == len(consumers)
    for actor in placed:
        assert actor["Node"]["Resources"].get("afisha_worker", 0) > 0, actor["ActorClassName"]

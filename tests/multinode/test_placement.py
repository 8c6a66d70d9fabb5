"""On the three-node cluster: the gateway's replicas and the inventory hosts are on at least two
distinct nodes, and the consumers only on the nodes offering the worker resource."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="module")
def actors() -> Iterator[list[dict[str, Any]]]:
    import ray
    from ray._private.state import actors as actor_table

    ray.init(address=os.environ["AFISHA_E2E_RAY_ADDRESS"], namespace="afisha-placement-test")
    try:
        alive = [a for a in actor_table().values() if a["State"] == "ALIVE"]
        nodes = {n["NodeID"]: n for n in ray.nodes() if n["Alive"]}
        for actor in alive:
            actor["Node"] = nodes[actor["Address"]["NodeID"]]
        yield alive
    finally:
        ray.shutdown()


def _nodes(actors: list[dict[str, Any]], predicate: Any) -> dict[str, list[str]]:
    where: dict[str, list[str]] = defaultdict(list)
    for actor in actors:
        if predicate(actor):
            where[actor["Address"]["NodeID"][:8]].append(actor["Name"] or actor["ActorClassName"])
    return dict(where)


def test_gateway_replicas_on_distinct_nodes(actors: list[dict[str, Any]]) -> None:
    where = _nodes(actors, lambda a: a["ActorClassName"].endswith(":Gateway"))
    print("gateway replicas:", where)
    assert sum(map(len, where.values())) == 2
    assert len(where) == 2


def test_inventory_hosts_on_distinct_nodes(actors: list[dict[str, Any]]) -> None:
    where = _nodes(actors, lambda a: (a["Name"] or "").startswith("inventory-host-"))
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

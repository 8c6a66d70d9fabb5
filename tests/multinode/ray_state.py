"""What runs where on the cluster, read from the GCS by a driver connected to it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any


def alive_nodes() -> dict[str, dict[str, Any]]:
    import ray

    return {n["NodeID"]: n for n in ray.nodes() if n["Alive"]}


def alive_actors() -> list[dict[str, Any]]:
    """Every live actor of the cluster, with ``Node`` (its node's entry in ``ray.nodes()``)."""
    from ray._private.state import actors as actor_table

    nodes = alive_nodes()
    alive = [a for a in actor_table().values()
             if a["State"] == "ALIVE" and a["Address"]["NodeID"] in nodes]
    for actor in alive:
        actor["Node"] = nodes[actor["Address"]["NodeID"]]
    return alive


def label(actor: dict[str, Any]) -> str:
    """A Serve replica as its deployment's name, an inventory host as its own name."""
    cls = actor["ActorClassName"]
    if cls.startswith("ServeReplica:"):
        return cls.rsplit(":", 1)[-1]
    return str(actor["Name"] or cls)


def by_node(actors: list[dict[str, Any]],
            predicate: Callable[[dict[str, Any]], bool]) -> dict[str, list[str]]:
    """Short node id -> the labels of the actors on it that ``predicate`` selects."""
    where: dict[str, list[str]] = defaultdict(list)
    for actor in actors:
        if predicate(actor):
            where[actor["Address"]["NodeID"][:8]].append(label(actor))
    return {node: sorted(names) for node, names in where.items()}


def is_ours(actor: dict[str, Any]) -> bool:
    """A Serve replica of the platform or an inventory host."""
    return actor["ActorClassName"].startswith("ServeReplica:afisha:") or is_host(actor)


def is_host(actor: dict[str, Any]) -> bool:
    return (actor["Name"] or "").startswith("inventory-host-")


def settled_actors(hosts: int, limit_s: float = 120) -> list[dict[str, Any]]:
    """The live actors once ``hosts`` inventory hosts run (the event service starts them in
    the background, so the platform answers before the last one is up)."""
    import time

    deadline = time.monotonic() + limit_s
    while True:
        actors = alive_actors()
        if sum(map(is_host, actors)) >= hosts or time.monotonic() > deadline:
            return actors
        time.sleep(0.5)

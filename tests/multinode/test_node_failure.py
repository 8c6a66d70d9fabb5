"""A worker node is lost during a flash sale on the three-node cluster.

The node chosen holds the inventory host of the event on sale and at least one Serve replica.
Its processes (raylet, agents, log monitor, and every worker process under them: replicas,
hosts) are killed with SIGKILL, by the process ids ``make cluster`` recorded when it started
the node. Serve and the inventory hosts must come back on the two surviving nodes; then the
audit of tests/sale.py: nothing oversold, every ``201`` the clients saw is in the database and
nothing else, one live payment per registration, outboxes drained, and every hold ending
exactly once when the registrations are cancelled. Where everything ran before and after, the
time to recover and the requests refused meanwhile are printed (``pytest -s``).

It runs last in ``make cluster``: the cluster has one worker fewer afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from actors import shards
from tests.e2e.conftest import RunningPlatform
from tests.e2e.test_event_flow import account, auth
from tests.multinode.ray_state import (
    alive_actors,
    alive_nodes,
    by_node,
    is_host,
    is_ours,
    settled_actors,
)
from tests.sale import audit, end_holds, paid_event, sell, verdict, wait_healthy

QUANTITY = 200
CLIENTS = 8
SALE_SECONDS = 12.0
FAULT_AT = 3.0
HOSTS = 3  # AFISHA_INVENTORY_HOSTS of the deployment (tests/multinode/local_cluster.py)
RECOVERY_LIMIT_S = 240


@pytest.fixture(scope="module")
def driver() -> Iterator[str]:
    """A Ray driver connected to the cluster; yields the id of the node it is attached to."""
    import ray

    ray.init(address=os.environ["AFISHA_E2E_RAY_ADDRESS"], namespace="afisha-node-failure")
    try:
        yield ray.get_runtime_context().get_node_id()
    finally:
        ray.shutdown()


def worker_pids() -> dict[str, list[int]]:
    found: dict[str, list[int]] = json.loads(
        Path(os.environ["AFISHA_E2E_CLUSTER_NODES"]).read_text())
    return found


def placement() -> dict[str, list[str]]:
    return by_node(alive_actors(), is_ours)


def host_node(host: str) -> str | None:
    for actor in alive_actors():
        if actor["Name"] == host:
            return str(actor["Address"]["NodeID"])
    return None


def kill_node(pids: list[int]) -> int:
    """SIGKILL the node's recorded processes and all their descendants; how many."""
    victims: dict[int, psutil.Process] = {}
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for process in [root, *root.children(recursive=True)]:
                victims[process.pid] = process
        except psutil.NoSuchProcess:
            continue
    for process in victims.values():
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            continue
    return len(victims)


def serve_settled(lost: str) -> bool:
    """Every deployment of the application healthy with all its replicas running, and no
    replica or host left on the lost node."""
    from ray import serve

    app = serve.status().applications.get("afisha")
    if app is None or app.status != "RUNNING":  # Serve's statuses are str enums
        return False
    for deployment in app.deployments.values():
        if deployment.status != "HEALTHY" or set(deployment.replica_states) != {"RUNNING"}:
            return False
    actors = [a for a in alive_actors() if is_ours(a)]
    hosts = {a["Name"] for a in actors if is_host(a)}
    return (lost not in alive_nodes() and len(hosts) == HOSTS
            and all(a["Address"]["NodeID"] != lost for a in actors))


def wait_recovered(lost: str, since: float) -> float:
    while time.monotonic() - since < RECOVERY_LIMIT_S:
        if serve_settled(lost):
            return time.monotonic() - since
        time.sleep(0.5)
    raise AssertionError(f"Serve and the hosts did not recover within {RECOVERY_LIMIT_S} s: "
                         f"{placement()}")


def sale_event(http: Any, owner: dict[str, Any], candidates: set[str]) -> tuple[str, str, str]:
    """An event whose inventory host runs on one of ``candidates``: (event, ticket type,
    node)."""
    for _ in range(12):
        event_id, tt_id = paid_event(http, owner, QUANTITY, "Node failure night")
        node = host_node(shards.host_name(shards.host_index(event_id, HOSTS)))
        if node in candidates:
            return event_id, tt_id, node
    raise AssertionError(f"no event's host landed on {candidates}: {placement()}")


def test_worker_node_lost_during_a_sale(platform: RunningPlatform, driver: str) -> None:
    pids = worker_pids()
    before = by_node(settled_actors(HOSTS), is_ours)
    replicas = {node for node, names in before.items()
                if any(not n.startswith("inventory-host-") for n in names)}
    candidates = {node for node in pids if node != driver and node[:8] in replicas}
    assert candidates, f"no worker node holds replicas: {before}"
    with platform.client() as http:
        owner = account(http, f"node-org-{uuid.uuid4().hex[:6]}@example.org")
        tokens = [auth(account(http, f"node-{n}-{uuid.uuid4().hex[:6]}@example.org"))
                  for n in range(CLIENTS)]
        event_id, tt_id, victim = sale_event(http, owner, candidates)
    before = placement()
    killed_at = [0.0]
    killed = [0]

    def lose_node() -> None:
        killed_at[0] = time.monotonic()
        killed[0] = kill_node(pids[victim])

    sale, took = sell(platform.base_url, tokens, event_id, tt_id, lose_node, clients=CLIENTS,
                      seconds=SALE_SECONDS, fault_at=FAULT_AT, give_up_s=RECOVERY_LIMIT_S)
    recovered = wait_recovered(victim, killed_at[0])
    healthy = wait_healthy(platform.base_url)
    after = placement()
    result = asyncio.run(audit(platform.database_url, event_id, set(sale.ok.values()),
                               QUANTITY, settle_s=180))
    found = verdict(result)
    holds = end_holds(platform.base_url, platform.database_url, event_id, tt_id, sale, tokens,
                      QUANTITY)
    first = f"{sale.recovered_at:.1f} s" if sale.recovered_at is not None else "-"
    print(f"\nnode lost: {victim[:8]} ({killed[0]} processes killed {FAULT_AT:.0f} s into a "
          f"{SALE_SECONDS:.0f} s sale of {QUANTITY} seats, {CLIENTS} clients)\n"
          f"before: {json.dumps(before, indent=1)}\nafter: {json.dumps(after, indent=1)}\n"
          f"Serve and hosts recovered {recovered:.1f} s after the kill (health 200 then "
          f"{healthy:.1f} s later); first definitive answer {first} after it; the sale took "
          f"{took:.1f} s\nanswers {sale.answers}, 201 {len(sale.ok)}, sold out "
          f"{sale.sold_out}, refused (retried) {sale.retried}: {dict(sale.refused)}\n"
          f"audit: {found}; holds: {holds or 'each ended once, every seat back'}")
    assert victim[:8] not in after
    assert found == "ok", found
    assert not holds, holds

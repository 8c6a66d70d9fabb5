"""``make cluster``: a head and two worker nodes on this machine (Ray's ``cluster_utils.Cluster``:
each node its own raylet, ports and the cluster's own temp dir), Afisha deployed onto it with
``afisha deploy --address``, then tests against it: the placement tests, the e2e suite, and
last the node-failure test (it removes a worker node, so nothing runs after it).

The worker nodes' process ids (raylet, agents, log monitor) are written to a JSON file named
by ``AFISHA_E2E_CLUSTER_NODES`` so the node-failure test can kill one node's processes, and
only those. Only the processes this cluster started are stopped (``Cluster.shutdown``);
nothing else on the machine is touched.

Usage: ``python -m tests.multinode.local_cluster [pytest args]``; ``AFISHA_CLUSTER_TESTS``
replaces the e2e part (default ``tests/e2e``; ``""`` runs only tests/multinode).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster.ports import free_port, serve_private_ports, wait_until_healthy
from cluster.serve_config import NODE_ENV, SERVE_ENV
from tests.conftest import AMQP_URL, PG_ADMIN_URL, REDIS_URL, new_database
from tests.e2e.conftest import ADMIN_EMAIL, E2E_JWT_SECRET, _delete_topology
from tests.fakes.server import running
from tests.fakes.telegram_api import FakeTelegram, create_app

ROOT = Path(__file__).resolve().parents[2]
NODE_CPUS = 1  # logical CPUs per node: three nodes share this machine's two cores
FIRST = ["tests/multinode/test_placement.py"]
LAST = ["tests/multinode/test_node_failure.py"]  # removes a worker node


def deploy_env(database: str, port: int, exchange: str, work: Path, bot_api_port: int,
               gateway_replicas: int = 2) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AFISHA_")}
    env.update({
        "AFISHA_DATABASE_URL": database, "AFISHA_AMQP_URL": AMQP_URL,
        "AFISHA_AMQP_EXCHANGE": exchange, "AFISHA_REDIS_URL": REDIS_URL,
        "AFISHA_REDIS_KEY_PREFIX": exchange.replace(".", "-"),
        "AFISHA_HTTP_PORT": str(port), "AFISHA_DATA_DIR": str(work / "data"),
        "AFISHA_JWT_SECRET": E2E_JWT_SECRET, "AFISHA_TICKET_SIGNING_KEY": "t" * 48,
        "AFISHA_PAYMENT_PROVIDER": "sandbox", "AFISHA_SANDBOX_WEBHOOK_SECRET": "s" * 48,
        "AFISHA_RATE_LIMIT_AUTH_PER_MINUTE": "0", "AFISHA_RATE_LIMIT_RESERVE_PER_MINUTE": "0",
        "AFISHA_RATE_LIMIT_DEFAULT_PER_MINUTE": "0", "AFISHA_ADMIN_EMAILS": ADMIN_EMAIL,
        # The Bot API double: the harness runs one while it deploys, the tests' own (bot_api,
        # on the same port) afterwards.
        "AFISHA_TELEGRAM_BOT_TOKEN": FakeTelegram.token,
        "AFISHA_TELEGRAM_API_URL": f"http://127.0.0.1:{bot_api_port}",
        # Placement: one proxy (three nodes here share one address), gateway replicas and
        # inventory hosts spread, consumers on the workers.
        "AFISHA_PROXY_LOCATION": "HeadOnly", "AFISHA_GATEWAY_REPLICAS": str(gateway_replicas),
        "AFISHA_GATEWAY_MAX_REPLICAS_PER_NODE": "1", "AFISHA_INVENTORY_SPREAD": "true",
        "AFISHA_INVENTORY_HOSTS": "3", "AFISHA_CONSUMER_RESOURCE": "afisha_worker",
    })
    return env


@dataclass
class Deployed:
    """Afisha on the local cluster: where it answers and what it runs on."""

    base_url: str
    database: str
    exchange: str
    address: str
    log: Path
    nodes_file: Path  # the worker nodes' process ids, by node id
    bot_api_port: int  # where the platform expects the Bot API


def node_pids(node: Any) -> list[int]:
    """The process ids a ``ray._private.node.Node`` started (raylet, agents, log monitor)."""
    return [info.process.pid for infos in node.all_processes.values() for info in infos]


@contextmanager
def deployed(gateway_replicas: int = 2) -> Iterator[Deployed]:
    """Start the three nodes, ``afisha deploy`` onto them, wait until healthy; stop afterwards."""
    from ray.cluster_utils import Cluster

    work = Path(tempfile.mkdtemp(prefix="afisha-cluster-"))
    # the raylets' (and Serve's) environment
    os.environ.update({**SERVE_ENV, **NODE_ENV, **serve_private_ports()})
    exchange = f"afisha.cluster.{uuid.uuid4().hex[:10]}"
    port = free_port()
    started = time.monotonic()
    for attempt in (1, 2):  # Ray gives a head 30 s to register: a loaded machine can miss it
        try:
            cluster = Cluster(initialize_head=True, head_node_args={
                "num_cpus": NODE_CPUS, "temp_dir": str(work / "ray"),
                "include_dashboard": False, "gcs_server_port": free_port()})
            break
        except Exception as exc:  # Ray raises a bare Exception here
            if attempt == 2:
                raise
            print(f"the head did not start ({exc}); starting it again", flush=True)
    try:
        workers = [cluster.add_node(num_cpus=NODE_CPUS, resources={"afisha_worker": 100},
                                    temp_dir=str(work / "ray")) for _ in range(2)]
        cluster.wait_for_nodes()
        nodes_file = work / "worker-nodes.json"
        nodes_file.write_text(json.dumps({n.node_id: node_pids(n) for n in workers}))
        print(f"cluster of 3 nodes at {cluster.address} in {time.monotonic() - started:.1f}s: "
              f"head {cluster.head_node.node_id[:8]}, workers "
              f"{', '.join(n.node_id[:8] for n in workers)}", flush=True)
        with new_database(PG_ADMIN_URL, "cluster") as database:
            bot_api_port = free_port()
            env = deploy_env(database, port, exchange, work, bot_api_port, gateway_replicas)
            with running(create_app(FakeTelegram()), bot_api_port):  # health asks getMe
                log = work / "afisha-deploy.log"
                begun = time.monotonic()
                with log.open("wb") as out:
                    done = subprocess.run(
                        [sys.executable, "-m", "cluster.cli", "deploy", "--address",
                         cluster.address],
                        env=env, cwd=work, stdout=out, stderr=subprocess.STDOUT, timeout=600)
                if done.returncode != 0:
                    raise RuntimeError(f"afisha deploy exited with {done.returncode}:\n"
                                       + log.read_text()[-4000:])
                base_url = f"http://127.0.0.1:{port}"
                probe = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
                try:
                    wait_until_healthy(probe, f"{base_url}/actuator/health", limit_s=120)
                finally:
                    probe.kill()
                    probe.wait()
            print(f"afisha deploy: healthy in {time.monotonic() - begun:.1f}s", flush=True)
            yield Deployed(base_url, database, exchange, cluster.address, log, nodes_file,
                           bot_api_port)
    finally:
        cluster.shutdown()  # only this cluster's processes (those already killed are skipped)
        asyncio.run(_delete_topology(AMQP_URL, exchange))


def main(pytest_args: list[str]) -> int:
    suites = os.environ.get("AFISHA_CLUSTER_TESTS", "tests/e2e").split()
    began = time.monotonic()
    try:
        with deployed() as platform:
            test_env = {**os.environ, "AFISHA_E2E_BASE_URL": platform.base_url,
                        "AFISHA_E2E_DATABASE_URL": platform.database,
                        "AFISHA_E2E_EXCHANGE": platform.exchange,
                        "AFISHA_E2E_LOG": str(platform.log),
                        "AFISHA_E2E_RAY_ADDRESS": platform.address,
                        "AFISHA_E2E_CLUSTER_NODES": str(platform.nodes_file),
                        "AFISHA_E2E_BOT_API_PORT": str(platform.bot_api_port)}
            tests = subprocess.run(
                [sys.executable, "-m", "pytest", *FIRST, *suites, *LAST, *pytest_args],
                env=test_env, cwd=ROOT)
    except RuntimeError as exc:
        print(exc)
        return 1
    print(f"make cluster: {time.monotonic() - began:.0f}s in all", flush=True)
    return tests.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

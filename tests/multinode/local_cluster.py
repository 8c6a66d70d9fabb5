"""``make cluster``: a head and two worker nodes on this machine (Ray's ``cluster_utils.Cluster``:
each node its own raylet, ports and the cluster's own temp dir), Afisha deployed onto it with
``afisha deploy --address``, then the e2e suite and tests/multinode run against it.

Only the processes this cluster started are stopped (``Cluster.shutdown``); nothing else on the
machine is touched. Usage: ``python -m tests.multinode.local_cluster [pytest args]``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from cluster.ports import free_port, serve_private_ports, wait_until_healthy
from cluster.serve_config import SERVE_ENV
from tests.conftest import AMQP_URL, PG_ADMIN_URL, REDIS_URL, new_database
from tests.e2e.conftest import ADMIN_EMAIL, E2E_JWT_SECRET, _delete_topology

ROOT = Path(__file__).resolve().parents[2]
NODE_CPUS = 1  # logical CPUs per node: three nodes share this machine's two cores


def deploy_env(database: str, port: int, exchange: str, work: Path) -> dict[str, str]:
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
        # Placement: one proxy (three nodes here share one address), gateway replicas and
        # inventory hosts spread, consumers on the workers.
        "AFISHA_PROXY_LOCATION": "HeadOnly", "AFISHA_GATEWAY_REPLICAS": "2",
        "AFISHA_GATEWAY_MAX_REPLICAS_PER_NODE": "1", "AFISHA_INVENTORY_SPREAD": "true",
        "AFISHA_INVENTORY_HOSTS": "3", "AFISHA_CONSUMER_RESOURCE": "afisha_worker",
    })
    return env


def main(pytest_args: list[str]) -> int:
    from ray.cluster_utils import Cluster

    work = Path(tempfile.mkdtemp(prefix="afisha-cluster-"))
    os.environ.update({**SERVE_ENV, **serve_private_ports()})  # the raylets' (and Serve's) env
    exchange = f"afisha.cluster.{uuid.uuid4().hex[:10]}"
    port = free_port()
    started = time.monotonic()
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": NODE_CPUS, "temp_dir": str(work / "ray"), "include_dashboard": False,
        "gcs_server_port": free_port()})
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=NODE_CPUS, resources={"afisha_worker": 100},
                             temp_dir=str(work / "ray"))
        cluster.wait_for_nodes()
        print(f"cluster of 3 nodes at {cluster.address} in {time.monotonic() - started:.1f}s",
              flush=True)
        with new_database(PG_ADMIN_URL, "cluster") as database:
            env = deploy_env(database, port, exchange, work)
            log = work / "afisha-deploy.log"
            begun = time.monotonic()
            with log.open("wb") as out:
                deployed = subprocess.run(
                    [sys.executable, "-m", "cluster.cli", "deploy", "--address", cluster.address],
                    env=env, cwd=work, stdout=out, stderr=subprocess.STDOUT, timeout=600)
            if deployed.returncode != 0:
                print(log.read_text()[-4000:])
                return deployed.returncode
            base_url = f"http://127.0.0.1:{port}"
            probe = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
            try:
                wait_until_healthy(probe, f"{base_url}/actuator/health", limit_s=120)
            finally:
                probe.kill()
                probe.wait()
            print(f"afisha deploy: healthy in {time.monotonic() - begun:.1f}s", flush=True)
            test_env = {**os.environ, "AFISHA_E2E_BASE_URL": base_url,
                        "AFISHA_E2E_DATABASE_URL": database, "AFISHA_E2E_EXCHANGE": exchange,
                        "AFISHA_E2E_LOG": str(log), "AFISHA_E2E_RAY_ADDRESS": cluster.address}
            tests = subprocess.run(
                [sys.executable, "-m", "pytest", "tests/multinode", "tests/e2e", *pytest_args],
                env=test_env, cwd=ROOT)
            return tests.returncode
    finally:
        cluster.shutdown()  # only this cluster's processes
        asyncio.run(_delete_topology(AMQP_URL, exchange))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Start the whole platform once (``afisha run`` in a subprocess) and speak HTTP to it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from cluster.ports import free_port, serve_private_ports, wait_until_healthy
from tests.conftest import new_database
from tests.fakes.telegram_api import FakeTelegram

# Known to the tests so they can mint access tokens for users the platform has not seen.
E2E_JWT_SECRET = "e2e-" + "0123456789abcdef" * 4
ADMIN_EMAIL = "admin@e2e-afisha.example.org"


class RunningPlatform:
    def __init__(self, base_url: str, log: Path, exchange: str = "", database_url: str = "",
                 pid: int = 0, redis_prefix: str = "", dashboard_port: int = 0) -> None:
        self.base_url = base_url
        self.log = log
        self.exchange = exchange  # its RabbitMQ exchange (and the prefix of its queues)
        self.database_url = database_url
        self.pid = pid  # of `afisha run`: Ray, the replicas and the hosts are its descendants
        self.redis_prefix = redis_prefix  # its Redis clients are named afisha:<prefix>
        self.dashboard_port = dashboard_port  # where a Ray dashboard would listen

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30)


# An already deployed platform (make cluster): its base URL, database and exchange. It must
# have been deployed with E2E_JWT_SECRET, ADMIN_EMAIL and no rate limits, as started_platform.
DEPLOYED_URL = os.environ.get("AFISHA_E2E_BASE_URL")


@pytest.fixture(scope="session")
def platform_database(pg_server: str) -> Iterator[str]:
    """The running platform's own database (the deployed one's, with AFISHA_E2E_BASE_URL)."""
    if DEPLOYED_URL:
        yield os.environ["AFISHA_E2E_DATABASE_URL"]
        return
    with new_database(pg_server, "e2e") as url:
        yield url


@pytest.fixture(scope="session")
def platform(platform_database: str, amqp_url: str, redis_url: str, bot_api: FakeTelegram,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    if DEPLOYED_URL:
        yield RunningPlatform(DEPLOYED_URL, Path(os.environ.get("AFISHA_E2E_LOG", os.devnull)),
                              os.environ.get("AFISHA_E2E_EXCHANGE", ""), platform_database)
        return
    with started_platform(platform_database, amqp_url, redis_url, bot_api,
                          tmp_path_factory.mktemp("platform")) as running:
        yield running


@contextmanager
def started_platform(platform_database: str, amqp_url: str, redis_url: str,
                     bot_api: FakeTelegram, work: Path) -> Iterator[RunningPlatform]:
    """``afisha run`` on its own database, exchange and Redis prefix, stopped afterwards.

    The free ports it is given can be taken by another process before the platform binds
    them (HAProxy then exits with "Address already in use"): only then it starts once more,
    on new ports."""
    for attempt in (1, 2):
        try:
            with _started_platform(platform_database, amqp_url, redis_url, bot_api,
                                   work / f"run-{attempt}") as running:
                yield running
            return
        except PortTaken:
            if attempt == 2:
                raise


class PortTaken(Exception):
    """The platform exited at start because a port it was given was in use by then."""


@contextmanager
def _started_platform(platform_database: str, amqp_url: str, redis_url: str,
                      bot_api: FakeTelegram, work: Path) -> Iterator[RunningPlatform]:
    work.mkdir(parents=True, exist_ok=True)
    port, dashboard_port = free_port(), free_port()
    run_id = uuid.uuid4().hex[:10]  # queues and Redis keys of its own: runs in parallel
    exchange = f"afisha.e2e.{run_id}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AFISHA_")}
    env.update({
        "AFISHA_DATABASE_URL": platform_database,
        "AFISHA_AMQP_URL": amqp_url,
        "AFISHA_AMQP_EXCHANGE": exchange,
        "AFISHA_REDIS_KEY_PREFIX": f"afisha-e2e-{run_id}",
        "AFISHA_REDIS_URL": redis_url,
        "AFISHA_HTTP_PORT": str(port),
        "AFISHA_DASHBOARD_PORT": str(dashboard_port),
        "AFISHA_DATA_DIR": str(work / "data"),
        "AFISHA_JWT_SECRET": E2E_JWT_SECRET,
        "AFISHA_PAYMENT_PROVIDER": "sandbox",
        "AFISHA_RATE_LIMIT_AUTH_PER_MINUTE": "0",
        "AFISHA_RATE_LIMIT_RESERVE_PER_MINUTE": "0",
        "AFISHA_RATE_LIMIT_DEFAULT_PER_MINUTE": "0",
        "AFISHA_ADMIN_EMAILS": ADMIN_EMAIL,
        "AFISHA_TELEGRAM_BOT_TOKEN": bot_api.token,
        "AFISHA_TELEGRAM_API_URL": bot_api.url,
        **serve_private_ports(),  # a platform already running here does not collide
    })
    log = work / "afisha-run.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "cluster.cli", "run"], env=env,
                                   cwd=work, stdout=out, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_healthy(process, base_url, log)
        yield RunningPlatform(base_url, log, exchange, platform_database, process.pid,
                              f"afisha-e2e-{run_id}", dashboard_port)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        asyncio.run(_delete_topology(amqp_url, exchange))


async def _delete_topology(amqp_url: str, exchange: str) -> None:
    import aio_pika

    from messaging import topology

    async with await aio_pika.connect(amqp_url) as connection:
        await topology.delete_all(await connection.channel(), topology.Names(exchange))


def _wait_until_healthy(process: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    try:
        wait_until_healthy(process, f"{base_url}/actuator/health", poll_s=1)
    except RuntimeError as exc:
        text = log.read_text()
        if process.poll() is not None and "Address already in use" in text:
            raise PortTaken(text[-2000:]) from exc
        pytest.fail(f"the platform did not become healthy ({exc}):\n{text[-4000:]}")

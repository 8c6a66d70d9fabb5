"""Running platforms (tests, benchmarks) side by side on one machine: free ports, private
Serve ports, waiting for a started platform to become healthy."""

from __future__ import annotations

import socket
import subprocess
import time

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_private_ports() -> dict[str, str]:
    """Environment giving a platform's Serve instance ports no other instance here uses.

    Serve's fallback proxy (fixed :8500), its replica ingress ports (from :30000) and HAProxy's
    side ports are the same in every instance: a second platform would get the first's requests.
    """
    http, grpc = free_port(), free_port()
    return {"RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(free_port()),
            "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(free_port()),
            "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(http),
            "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(http + 200),
            "RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT": str(grpc),
            "RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT": str(grpc + 200),
            "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
            "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port())}


def wait_until_healthy(process: subprocess.Popen[bytes], url: str, limit_s: float = 240,
                       poll_s: float = 0.5) -> None:
    """Poll ``url`` until it answers 200; ``RuntimeError`` if ``process`` exits first or the
    time runs out."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the process exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(poll_s)
    raise RuntimeError(f"{url} did not answer 200 within {limit_s:.0f} s")

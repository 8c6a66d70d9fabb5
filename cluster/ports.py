"""Ports for running several platforms (tests, benchmarks) side by side on one machine."""

from __future__ import annotations

import socket


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

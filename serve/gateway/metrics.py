"""Prometheus metrics of the gateway: request count and latency by route template and status."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ("method", "route", "status")
        self.requests = Counter("afisha_http_requests", "HTTP requests served by the gateway",
                                labels, registry=self.registry)
        self.latency = Histogram("afisha_http_request_duration_seconds",
                                 "Gateway request latency", labels, buckets=BUCKETS,
                                 registry=self.registry)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, str(status))
        self.requests.labels(*key).inc()
        self.latency.labels(*key).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)

"""Prometheus view of every service's messaging: outbox lag, dead letters, consumer state.

Rendered at scrape time from each service's ``messaging_status()`` (the same numbers as the
``messaging`` component of ``/actuator/health``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

OUTCOMES = ("applied", "duplicates", "failures", "dead_lettered")


class MessagingCollector(Collector):
    def __init__(self, statuses: Mapping[str, Mapping[str, Any]]) -> None:
        self.statuses = statuses

    def collect(self) -> Iterator[Metric]:
        unsent = GaugeMetricFamily("afisha_outbox_unsent", "Outbox rows not yet relayed",
                                   labels=["service"])
        oldest = GaugeMetricFamily("afisha_outbox_oldest_age_seconds",
                                   "Age of the oldest unsent outbox row", labels=["service"])
        failing = GaugeMetricFamily("afisha_relay_consecutive_failures",
                                    "Failed relay attempts since the last success",
                                    labels=["service"])
        dead = GaugeMetricFamily("afisha_dead_letters", "Messages in the dead-letter queue",
                                 labels=["service"])
        up = GaugeMetricFamily("afisha_consumer_up", "1 when the service's consumer is running",
                               labels=["service"])
        handled = CounterMetricFamily("afisha_consumer_messages",
                                      "Messages handled by the service's consumer (this replica)",
                                      labels=["service", "outcome"])
        queued = GaugeMetricFamily("afisha_notification_queue_depth",
                                   "Notifications queued for Telegram", labels=["service"])
        queued_age = GaugeMetricFamily("afisha_notification_queue_oldest_age_seconds",
                                       "Age of the oldest queued notification",
                                       labels=["service"])
        for service, status in sorted(self.statuses.items()):
            queue = status.get("notifications")
            if isinstance(queue, Mapping):
                queued.add_metric([service], float(queue.get("depth", 0)))
                queued_age.add_metric([service], float(queue.get("oldest_age_seconds", 0)))
            outbox = status.get("outbox")
            if isinstance(outbox, Mapping):
                unsent.add_metric([service], float(outbox.get("unsent", 0)))
                oldest.add_metric([service], float(outbox.get("oldest_age_seconds", 0)))
                failing.add_metric([service], float(outbox.get("failures", 0)))
            consumer = status.get("consumer")
            if isinstance(consumer, Mapping):
                up.add_metric([service], 1.0 if consumer.get("connected", True) else 0.0)
                for outcome in OUTCOMES:
                    handled.add_metric([service, outcome], float(consumer.get(outcome, 0)))
                if status.get("dead_letters") is not None:
                    dead.add_metric([service], float(status["dead_letters"]))
        yield from (unsent, oldest, failing, dead, up, handled, queued, queued_age)


def render(statuses: Mapping[str, Mapping[str, Any]]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MessagingCollector(statuses))
    return generate_latest(registry)

"""Messaging metrics as Prometheus renders them from the services' status."""

from __future__ import annotations

from serve.gateway.messaging_metrics import render

STATUS = {
    "event": {"transport": "rabbitmq", "status": "UP",
              "outbox": {"unsent": 3, "oldest_age_seconds": 1.5, "failures": 0},
              "consumer": {"connected": True, "applied": 7, "duplicates": 1, "failures": 2,
                           "dead_lettered": 1},
              "dead_letters": 4},
    "notification": {"transport": "rabbitmq", "status": "DOWN",
                     "consumer": {"connected": False, "applied": 0, "duplicates": 0,
                                  "failures": 0, "dead_lettered": 0},
                     "dead_letters": None},
}


def test_outbox_lag_dead_letters_and_consumer_state_are_exported_per_service() -> None:
    text = render(STATUS).decode()
    assert 'afisha_outbox_unsent{service="event"} 3.0' in text
    assert 'afisha_outbox_oldest_age_seconds{service="event"} 1.5' in text
    assert 'afisha_relay_consecutive_failures{service="event"} 0.0' in text
    assert 'afisha_dead_letters{service="event"} 4.0' in text
    assert 'afisha_consumer_up{service="event"} 1.0' in text
    assert 'afisha_consumer_up{service="notification"} 0.0' in text
    assert 'afisha_consumer_messages_total{outcome="duplicates",service="event"} 1.0' in text
    assert 'afisha_outbox_unsent{service="notification"}' not in text  # it publishes nothing
    assert 'afisha_dead_letters{service="notification"}' not in text  # unknown while down


def test_the_notification_queue_depth_and_age_are_exported() -> None:
    status = {"notification": {**STATUS["notification"],
                               "notifications": {"depth": 12, "oldest_age_seconds": 3.25}}}
    text = render(status).decode()
    assert 'afisha_notification_queue_depth{service="notification"} 12.0' in text
    assert 'afisha_notification_queue_oldest_age_seconds{service="notification"} 3.25' in text

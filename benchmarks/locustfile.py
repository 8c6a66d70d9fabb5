"""Locust scenarios of the ticket-sale benchmark (``make bench`` runs them; see README.md).

The users, events and tokens are prepared beforehand by ``benchmarks/bench.py prepare`` and
read from the JSON plan named by ``BENCH_PLAN``, so the same users hit Afisha and the baseline.
Pick a scenario by its class name::

    BENCH_PLAN=benchmarks/results/plan.json locust -f benchmarks/locustfile.py \\
        --host http://127.0.0.1:8000 FlashSale            # web UI on :8089
    BENCH_PLAN=… locust -f benchmarks/locustfile.py --headless -u 64 -r 64 -t 60s \\
        --host http://127.0.0.1:8000 SpreadSale

- ``FlashSale``: every user reserves one seat of the hot event's paid ticket type, again and
  again, until it is sold out; then (``"checkout": true`` in the plan, Afisha only) pays its
  first registration through the sandbox checkout and stops (``BENCH_CHECKOUT=1``, Afisha
  only: the baseline has no payments). The run ends when every user has stopped.
- ``SpreadSale``: the same, over the plan's 100 events (a random one per request).
- ``Browse``: the event list and an event's detail and ticket types, anonymously (the way a
  visitor browses), with a reservation on one of the five most popular browse events in every
  fifth task.
- ``Session``: the trivial authenticated GET (``/api/v1/auth/session``) for ``gateway_ratio``.

A reservation is counted by its outcome: ``201`` is a success of ``reserve``; ``409`` sold out
is a success of the request named ``reserve: sold out``; anything else is a failure. With
``BENCH_SALE_FILE`` set, the number of reservations and the times of the first and last are
written there when Locust quits (a single Locust process).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
import uuid
from typing import Any

from locust import FastHttpUser, between, constant, events, task
from locust.exception import StopUser

PLAN: dict[str, Any] = {}
_tokens: itertools.count[int] = itertools.count()
POPULAR = 5  # browse: reservations go to the first few of the browsed events
_finished = {"users": 0}
# Reservations this process saw succeed, and when the first and the last did.
SALE: dict[str, Any] = {"reserved": 0, "first": None, "last": None}


@events.init.add_listener
def load_plan(environment: Any, **_: Any) -> None:
    with open(os.environ["BENCH_PLAN"]) as f:
        PLAN.update(json.load(f))


@events.quitting.add_listener
def save_sale(environment: Any, **_: Any) -> None:
    if os.environ.get("BENCH_SALE_FILE"):
        with open(os.environ["BENCH_SALE_FILE"], "w") as f:
            json.dump(SALE, f)


class PlanUser(FastHttpUser):
    abstract = True
    wait_time = constant(0)

    def on_start(self) -> None:
        prepared = PLAN["users"][next(_tokens) % len(PLAN["users"])]
        self.user_id = prepared["id"]
        self.auth = {"Authorization": f"Bearer {prepared['token']}"}
        self.mine: list[str] = []

    def reserve(self, event_id: str, ticket_type_id: str) -> bool:
        """One reservation; False once the ticket type is sold out."""
        headers = {**self.auth, "Idempotency-Key": uuid.uuid4().hex}
        with self.client.post(f"/api/v1/events/{event_id}/registrations", headers=headers,
                              json={"ticket_type_id": ticket_type_id, "quantity": 1},
                              name="reserve", catch_response=True) as response:
            if response.status_code == 201:
                self.mine.append(response.json()["id"])
                now = time.time()
                SALE["first"] = SALE["first"] or now
                SALE["last"], SALE["reserved"] = now, SALE["reserved"] + 1
                return True
            if response.status_code == 409 and "sold-out" in response.text:
                response.request_meta["name"] = "reserve: sold out"
                response.success()
                return False
            response.failure(f"{response.status_code}: {response.text[:200]}")
            return True

    def finish(self) -> None:
        """This user is done; the run ends when every user is."""
        _finished["users"] += 1
        runner = self.environment.runner
        if runner is not None and _finished["users"] >= runner.target_user_count:
            runner.quit()
        raise StopUser()


class FlashSale(PlanUser):
    @task
    def buy(self) -> None:
        hot = PLAN["hot"]
        if not self.reserve(hot["event_id"], hot["ticket_type_id"]):
            if os.environ.get("BENCH_CHECKOUT") and self.mine:
                self.checkout(self.mine[0])
            self.finish()

    def checkout(self, registration_id: str) -> None:
        """Pay a registration through the sandbox: wait for its payment (created from
        ``registration.created``), complete the checkout."""
        deadline = time.monotonic() + float(os.environ.get("BENCH_PAYMENT_WAIT_S", "120"))
        while time.monotonic() < deadline:
            found = self.client.get(f"/api/v1/payments?registration_id={registration_id}",
                                    headers=self.auth, name="payments by registration")
            items = found.json().get("items", []) if found.status_code == 200 else []
            if items:
                self.client.post(f"/api/v1/payments/{items[0]['id']}/sandbox-checkout",
                                 headers=self.auth, json={"outcome": "succeeded"},
                                 name="sandbox checkout")
                return
            time.sleep(1)


class SpreadSale(PlanUser):
    def on_start(self) -> None:
        super().on_start()
        self.open = list(PLAN["spread"])

    @task
    def buy(self) -> None:
        target = random.choice(self.open)
        if not self.reserve(target["event_id"], target["ticket_type_id"]):
            self.open.remove(target)
            if not self.open:
                self.finish()


class Browse(PlanUser):
    wait_time = between(0, 0.01)

    @task(2)
    def list_events(self) -> None:
        self.client.get("/api/v1/events?limit=20", name="list events")

    @task(2)
    def detail(self) -> None:
        event_id = random.choice(PLAN["browse"])["event_id"]
        self.client.get(f"/api/v1/events/{event_id}", name="event detail")
        self.client.get(f"/api/v1/events/{event_id}/ticket-types", name="ticket types")

    @task(1)
    def buy(self) -> None:
        target = random.choice(PLAN["browse"][:POPULAR])
        self.reserve(target["event_id"], target["ticket_type_id"])


class Session(PlanUser):
    @task
    def session(self) -> None:
        self.client.get("/api/v1/auth/session", headers=self.auth, name="session")

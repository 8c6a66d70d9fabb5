"""Where an event's inventory lives: a fixed shard per event, a fixed host per shard."""

from __future__ import annotations

import uuid
from collections import Counter

from actors import shards


def test_an_event_always_maps_to_the_same_shard_and_host() -> None:
    event_id = str(uuid.uuid4())
    assert {shards.shard_of(event_id) for _ in range(10)} == {shards.shard_of(event_id)}
    assert shards.host_index(event_id, 4) == shards.shard_of(event_id) % 4
    # A known id keeps its shard across releases: the mapping is part of the stored fences.
    assert shards.shard_of("00000000-0000-0000-0000-000000000001") == 31


def test_every_shard_belongs_to_exactly_one_host() -> None:
    for hosts in (1, 2, 3, 8):
        owned = [s for i in range(hosts) for s in shards.shards_of_host(i, hosts)]
        assert sorted(owned) == list(range(shards.SHARDS))


def test_events_spread_over_the_hosts() -> None:
    counts = Counter(shards.host_index(str(uuid.uuid4()), 4) for _ in range(4000))
    assert set(counts) == {0, 1, 2, 3}
    assert min(counts.values()) > 800  # roughly even: 1,000 each


def test_host_names_and_scopes() -> None:
    assert shards.host_name(1) == "inventory-host-1"
    assert shards.hot_host_name("e") == "inventory-hot-e"
    assert shards.shard_scope(7) == "shard:7" and shards.event_scope("e") == "event:e"

"""Where an event's inventory lives: event -> fixed virtual shard -> host.

Pure and stable: the shard of an event is a hash of its id modulo a constant that never changes,
and a shard belongs to host ``shard % hosts``. A hot event (declared by its organizer) is owned
by a dedicated host of its own instead. Hosts live in a Ray namespace of their database. Each
owner scope (a shard, or one hot event) has a
fencing epoch in Postgres (``event_service.inventory_fences``).
"""

from __future__ import annotations

import hashlib
import zlib

SHARDS = 256


def namespace_of(database_url: str) -> str:
    """The Ray namespace of the hosts that keep the inventory of one database: hosts of
    another database (another platform, a test session) never answer for it."""
    return "afisha-inventory-" + hashlib.sha256(database_url.encode()).hexdigest()[:12]


def shard_of(event_id: str) -> int:
    return zlib.crc32(event_id.encode()) % SHARDS


def host_index(event_id: str, hosts: int) -> int:
    return shard_of(event_id) % hosts


def shards_of_host(index: int, hosts: int) -> list[int]:
    return [s for s in range(SHARDS) if s % hosts == index]


def host_name(index: int) -> str:
    return f"inventory-host-{index}"


def hot_host_name(event_id: str) -> str:
    return f"inventory-hot-{event_id}"


def shard_scope(shard: int) -> str:
    return f"shard:{shard}"


def event_scope(event_id: str) -> str:
    return f"event:{event_id}"

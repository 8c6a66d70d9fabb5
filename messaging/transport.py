"""What the relay hands to a transport, and the transport interface both transports implement."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from messaging.envelope import Envelope


@dataclass(frozen=True)
class OutboxMessage:
    aggregate_id: str
    envelope: Envelope


class Transport(Protocol):
    async def send(self, messages: Sequence[OutboxMessage]) -> None:
        """Return only once every message is safely with its consumers (or the broker)."""

    def status(self) -> dict[str, Any]: ...

    async def close(self) -> None: ...


def by_aggregate(messages: Sequence[OutboxMessage]) -> list[list[Envelope]]:
    """Messages grouped by aggregate, each group in outbox order (groups may go in parallel)."""
    groups: dict[str, list[Envelope]] = {}
    for message in messages:
        groups.setdefault(message.aggregate_id, []).append(message.envelope)
    return list(groups.values())

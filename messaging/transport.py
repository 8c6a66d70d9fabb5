"""What the relay hands to a transport, and the transport interface both transports implement."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any, Protocol

from messaging.envelope import Envelope


@dataclass(frozen=True)
class OutboxMessage:
    """An outbox row as the relay read it: the envelope's JSON as stored (both transports
    carry these bytes as they are) and the few envelope fields a broker message carries as
    properties."""

    aggregate_id: str
    body: bytes
    type: str
    message_id: str
    correlation_id: str
    producer: str
    occurred_at: datetime
    schema_version: int = 1

    @classmethod
    def of(cls, aggregate_id: str, envelope: Envelope) -> OutboxMessage:
        return cls(aggregate_id, envelope.to_json(), envelope.type, str(envelope.id),
                   envelope.correlation_id, envelope.producer, envelope.occurred_at,
                   envelope.schema_version)

    @cached_property
    def envelope(self) -> Envelope:
        """The parsed envelope (neither transport needs it: both carry ``body``)."""
        return Envelope.from_json(self.body)


class Transport(Protocol):
    async def send(self, messages: Sequence[OutboxMessage]) -> None:
        """Return only once every message is safely with its consumers (or the broker)."""

    def status(self) -> dict[str, Any]: ...

    async def close(self) -> None: ...

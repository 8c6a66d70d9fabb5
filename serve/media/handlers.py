"""The media service's consumer effect: which events anyone may see, so their covers are
readable by anyone (``MediaUseCases.may_read``).

Every ``event.*`` lifecycle or update message carries the event's ``status``, ``visibility``
and its row's ``updated_at``; the row of ``event_states`` keeps the newest of them whatever the
arrival order, and a redelivered message writes what is already there.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.dialects.postgresql import insert as pg_insert

from messaging.envelope import Envelope
from messaging.outbox import UnitOfWork
from storage.media import event_states

# The statuses in which an event is listed to anyone (with visibility public).
PUBLIC_STATUSES = frozenset({"published", "completed"})


def is_public(status: str | None, visibility: str | None) -> bool:
    return status in PUBLIC_STATUSES and visibility == "public"


async def on_event_changed(uow: UnitOfWork, envelope: Envelope) -> None:
    data = envelope.data
    if data.get("status") is None:  # a message from before the state was carried
        return
    try:
        event_id = uuid.UUID(str(data["event_id"]))
    except ValueError:
        return  # not an id the media service can hold as a cover's event
    changed_at = (datetime.fromisoformat(data["updated_at"]) if data.get("updated_at")
                  else envelope.occurred_at)
    stmt = pg_insert(event_states).values(
        event_id=event_id, public=is_public(data["status"], data.get("visibility")),
        changed_at=changed_at)
    await uow.session.execute(stmt.on_conflict_do_update(
        index_elements=["event_id"],
        set_={"public": stmt.excluded.public, "changed_at": stmt.excluded.changed_at},
        where=event_states.c.changed_at <= stmt.excluded.changed_at))

"""Use cases around registrations: reading, cancelling, check-in, tickets, waiting lists.

Creating a registration and anything that moves seats goes to the event's inventory actor.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from actors.store import load_registration
from messaging.outbox import UnitOfWork
from serve.common import paging
from serve.common.context import RequestContext
from serve.common.errors import BadRequest, Conflict, Forbidden, NotFound
from serve.events.domain import TICKET_ISSUED, RegistrationStatus, transition_registration
from serve.events.schemas import CheckInIn, RegistrationIn, WaitlistIn
from serve.events.service import EventAccess, user_of
from serve.events.tickets import qr_png, ticket_code, verify_ticket_code
from serve.events.views import iso, registration_view
from storage.event import checkins, registrations, waitlist_entries

PAGE = 50


class RegistrationUseCases(EventAccess):
    async def register(self, ctx: RequestContext, event_id: str, body: RegistrationIn,
                       idempotency_key: str | None) -> dict[str, Any]:
        """The same call the gateway makes directly on the actor (one hop); kept for callers
        that only hold the event service's handle."""
        user_id = user_of(ctx)
        await self.visible_event(ctx, event_id)
        result: dict[str, Any] = await self.inventory.reserve(
            event_id, user_id, body.ticket_type_id, body.quantity, body.payment_mode,
            idempotency_key or uuid.uuid4().hex, ctx.correlation_id)
        return result

    async def _owned_or_managed(self, ctx: RequestContext,
                                registration_id: str) -> tuple[dict[str, Any], bool]:
        """The registration and whether the caller is an organizer (rather than its attendee);
        404 for anyone else."""
        user_id = user_of(ctx)
        async with self.sessions() as session:
            row = await load_registration(session, registration_id)
        if row is None:
            raise NotFound(f"no registration {registration_id}")
        if row["user_id"] == user_id:
            return row, False
        event = await self.event(row["event_id"])
        if not await self.is_manager(ctx, event["organization_id"]):
            raise NotFound(f"no registration {registration_id}")
        return row, True

    def _with_code(self, row: dict[str, Any]) -> dict[str, Any]:
        view = registration_view(row)
        view["ticket_code"] = (ticket_code(self.settings, row["id"], row["event_id"])
                               if row["status"] in TICKET_ISSUED else None)
        return view

    async def get_registration(self, ctx: RequestContext, registration_id: str) -> dict[str, Any]:
        row, _ = await self._owned_or_managed(ctx, registration_id)
        return self._with_code(row)

    async def cancel_registration(self, ctx: RequestContext,
                                  registration_id: str) -> dict[str, Any]:
        row, _ = await self._owned_or_managed(ctx, registration_id)
        if row["user_id"] != user_of(ctx):
            raise Forbidden("only the attendee cancels a registration")
        transition_registration(row["status"], "cancel")
        result: dict[str, Any] = await self.inventory.call(
            row["event_id"], "cancel", registration_id, "attendee")
        return result

    async def ticket_png(self, ctx: RequestContext, registration_id: str) -> bytes:
        row, _ = await self._owned_or_managed(ctx, registration_id)
        if row["status"] not in TICKET_ISSUED:
            raise Conflict(f"the registration is {row['status']}; it has no ticket",
                           slug="no-ticket")
        return qr_png(ticket_code(self.settings, row["id"], row["event_id"]))

    async def check_in(self, ctx: RequestContext, registration_id: str,
                       body: CheckInIn) -> dict[str, Any]:
        user_id = user_of(ctx)
        code_registration, code_event = verify_ticket_code(self.settings, body.ticket_code)
        if code_registration != registration_id:
            raise BadRequest("the ticket code belongs to another registration",
                             slug="invalid-ticket")
        event = await self.event(code_event)
        await self.require_manager(ctx, event)
        async with UnitOfWork(self.sessions, "event", ctx) as uow:
            row = (await uow.session.execute(
                select(registrations).where(registrations.c.id == registration_id)
                .with_for_update())).mappings().first()
            if row is None:
                raise NotFound(f"no registration {registration_id}")
            if row["status"] == RegistrationStatus.CHECKED_IN:
                raise Conflict("this ticket has already been checked in",
                               slug="already-checked-in")
            transition_registration(row["status"], "check_in")
            await uow.session.execute(update(registrations)
                                      .where(registrations.c.id == registration_id)
                                      .values(status="checked_in", updated_at=func.now()))
            at = (await uow.session.execute(insert(checkins).values(
                registration_id=registration_id, event_id=row["event_id"],
                checked_in_by=user_id).returning(checkins.c.checked_in_at))).scalar_one()
            uow.publish("checkin.completed", {
                "registration_id": registration_id, "event_id": row["event_id"],
                "user_id": row["user_id"], "checked_in_at": at.isoformat()},
                aggregate_id=row["event_id"])
        return {"registration_id": registration_id, "checked_in_at": iso(at)}

    async def event_registrations(self, ctx: RequestContext, event_id: str,
                                  cursor: str | None = None) -> dict[str, Any]:
        """Participants: open -> attendees and organizers see them; closed -> organizers."""
        user_id = user_of(ctx)
        event = await self.visible_event(ctx, event_id)
        manager = await self.is_manager(ctx, event["organization_id"])
        if not manager:
            async with self.sessions() as session:
                attending = await session.scalar(select(registrations.c.id).where(
                    registrations.c.event_id == event_id, registrations.c.user_id == user_id,
                    registrations.c.status.in_(TICKET_ISSUED)).limit(1))
            if event["participants_visibility"] == "closed" or attending is None:
                raise Forbidden("the participant list is not visible to you")
        query = select(registrations).where(registrations.c.event_id == event_id)
        if not manager:  # attendees see who comes, not what anyone paid
            query = query.where(registrations.c.status.in_(TICKET_ISSUED))
        page = await self._page(query, cursor)
        if not manager:
            page["items"] = [{k: r[k] for k in ("id", "user_id", "ticket_type_id", "quantity",
                                                 "status")} for r in page["items"]]
        return page

    async def my_registrations(self, ctx: RequestContext,
                               cursor: str | None = None) -> dict[str, Any]:
        query = select(registrations).where(registrations.c.user_id == user_of(ctx))
        return await self._page(query, cursor)

    async def _page(self, query: Any, cursor: str | None) -> dict[str, Any]:
        query = paging.keyset(query, registrations.c.created_at, registrations.c.id, cursor,
                              PAGE)
        async with self.sessions() as session:
            rows = [dict(r) for r in (await session.execute(query)).mappings().all()]
        page, next_cursor = paging.split(rows, PAGE, "created_at", "id")
        return {"items": [registration_view(r) for r in page], "next_cursor": next_cursor}

    # --- waiting list ---
    async def join_waitlist(self, ctx: RequestContext, event_id: str,
                            body: WaitlistIn) -> dict[str, Any]:
        user_id = user_of(ctx)
        event = await self.visible_event(ctx, event_id)
        counts = await self.inventory.call(event_id, "ready")
        stock = counts["ticket_types"].get(body.ticket_type_id)
        if stock is None:
            raise NotFound(f"no ticket type {body.ticket_type_id} for event {event_id}")
        if stock["available"] >= body.quantity:
            raise Conflict("tickets are still available; register instead",
                           slug="not-sold-out")
        entry = {"id": str(uuid.uuid4()), "event_id": event_id, "user_id": user_id,
                 "ticket_type_id": body.ticket_type_id, "quantity": body.quantity,
                 "status": "waiting"}
        try:
            async with UnitOfWork(self.sessions, "event", ctx) as uow:
                joined_at = await uow.session.scalar(insert(waitlist_entries).values(**entry)
                                                     .returning(waitlist_entries.c.created_at))
                uow.publish("waitlist.joined", {
                    "entry_id": entry["id"], "event_id": event_id,
                    "organization_id": event["organization_id"],
                    "ticket_type_id": body.ticket_type_id, "user_id": user_id,
                    "quantity": body.quantity, "joined_at": joined_at.isoformat()},
                    aggregate_id=event_id)
        except IntegrityError as exc:
            raise Conflict("you are already on this event's waiting list",
                           slug="already-waiting") from exc
        return entry

    async def leave_waitlist(self, ctx: RequestContext, event_id: str) -> None:
        async with self.sessions.begin() as session:
            result = await session.execute(
                update(waitlist_entries)
                .where(waitlist_entries.c.event_id == event_id,
                       waitlist_entries.c.user_id == user_of(ctx),
                       waitlist_entries.c.status == "waiting")
                .values(status="left").returning(waitlist_entries.c.id))
            if result.first() is None:
                raise NotFound("you are not waiting for this event")


"""Use cases of the event service: events, their lifecycle and ticket types.

Registrations, check-in and waiting lists are in ``serve.events.registrations``; seats are
decided only by the event's inventory owner (``actors.owner`` on an ``actors.host``).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from sqlalchemy import and_, func, insert, or_, select, union_all, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cluster.settings import Settings
from messaging.outbox import UnitOfWork
from serve.common import paging
from serve.common.context import RequestContext
from serve.common.errors import (
    Conflict,
    Forbidden,
    NotFound,
    Unauthorized,
    Unprocessable,
)
from serve.events import domain
from serve.events.schemas import EventFilters, EventIn, EventUpdate, TicketTypeIn
from serve.events.views import event_view, ticket_type_view
from storage.event import events, group_members, registrations, reservations, ticket_types

LIFECYCLE_EVENTS = {"publish": "event.published", "unpublish": "event.unpublished",
                    "cancel": "event.cancelled", "complete": "event.completed"}


class Users(Protocol):
    """What the event service asks the user service (roles and group membership)."""

    async def organization_role(self, ctx: RequestContext, user_id: str,
                                organization_id: str) -> str | None: ...

    async def is_group_member(self, ctx: RequestContext, user_id: str, group_id: str) -> bool: ...

    async def group_organization(self, ctx: RequestContext, group_id: str) -> str | None: ...


class Covers(Protocol):
    """What the event service asks the media service (``serve.media.client.MediaClient``)."""

    async def attach_cover(self, ctx: RequestContext, media_id: str, event_id: str,
                           organization_id: str) -> dict[str, Any]: ...

    async def detach_cover(self, ctx: RequestContext, media_id: str, event_id: str) -> None: ...

    async def cover_urls(self, ctx: RequestContext, media_ids: list[str],
                         expires_in: int) -> dict[str, dict[str, str]]: ...


COVER_URL_SECONDS = 24 * 3600


class Inventories(Protocol):
    """The per-event inventory actors (``actors.client.InventoryClient``)."""

    async def call(self, event_id: str, method: str, *args: Any, **kwargs: Any) -> Any: ...

    async def call_if_active(self, event_id: str, method: str, *args: Any) -> Any: ...

    async def declare_hot(self, event_id: str, hot: bool) -> dict[str, Any]: ...

    async def reserve(self, event_id: str, user_id: str, ticket_type_id: str, quantity: int,
                      payment_mode: str, idempotency_key: str, correlation_id: str) -> Any: ...


async def _nothing(event_id: str) -> None:
    return None


def user_of(ctx: RequestContext) -> str:
    if ctx.identity is None:
        raise Unauthorized("send an access token: Authorization: Bearer <token>")
    return ctx.identity.user_id


class EventAccess:
    """Loading events and deciding who may see or manage them."""

    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession],
                 users: Users, inventory: Inventories) -> None:
        self.settings = settings
        self.sessions = sessions
        self.users = users
        self.inventory = inventory
        self.changed: Callable[[str], Awaitable[None]] = _nothing  # e.g. drop cached answers
        self.covers: Covers | None = None  # the media service (event covers)

    async def attach_cover(self, ctx: RequestContext, media_id: str, event_id: str,
                           organization_id: str) -> None:
        """Validated by the media service: exists, ready, an image, same organization."""
        if self.covers is None:
            raise Unprocessable("covers are not available here", slug="invalid-cover")
        await self.covers.attach_cover(ctx, media_id, event_id, organization_id)

    async def with_covers(self, ctx: RequestContext,
                          views: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each view with ``cover``: the cover's variant URLs (thumb, card, cover) or None."""
        ids = sorted({str(v["cover_media_id"]) for v in views if v.get("cover_media_id")})
        urls = (await self.covers.cover_urls(ctx, ids, COVER_URL_SECONDS)
                if ids and self.covers is not None else {})
        for v in views:
            v["cover"] = urls.get(str(v.get("cover_media_id"))) or None
        return views

    async def event(self, event_id: str, session: AsyncSession | None = None) -> dict[str, Any]:
        """The event's row (404 if none), read in ``session`` or a session of its own."""
        if session is None:
            async with self.sessions() as own:
                return await self.event(event_id, own)
        row = (await session.execute(select(events).where(events.c.id == event_id))
               ).mappings().first()
        if row is None:
            raise NotFound(f"no event {event_id}")
        return dict(row)

    async def is_manager(self, ctx: RequestContext, organization_id: str) -> bool:
        if ctx.identity is None:
            return False
        role = await self.users.organization_role(ctx, ctx.identity.user_id, organization_id)
        return role in domain.MANAGER_ROLES

    async def require_manager(self, ctx: RequestContext, event: dict[str, Any]) -> None:
        user_of(ctx)
        if not await self.is_manager(ctx, event["organization_id"]):
            raise Forbidden("only the organization's owner or moderators manage its events")

    async def can_see(self, ctx: RequestContext, event: dict[str, Any]) -> bool:
        listed = event["status"] != domain.EventStatus.DRAFT
        if listed and event["visibility"] == "public":
            return True
        if await self.is_manager(ctx, event["organization_id"]):
            return True
        if not listed:
            return False
        if ctx.identity is None:
            return False
        async with self.sessions() as session:
            mirrored = await session.scalar(select(group_members.c.user_id).where(
                group_members.c.group_id == event["group_id"],
                group_members.c.user_id == ctx.identity.user_id))
        return mirrored is not None or await self.users.is_group_member(
            ctx, ctx.identity.user_id, event["group_id"])

    async def visible_event(self, ctx: RequestContext, event_id: str) -> dict[str, Any]:
        """The event, or 404 when the caller may not see it (its existence stays private)."""
        event = await self.event(event_id)
        if not await self.can_see(ctx, event):
            raise NotFound(f"no event {event_id}")
        return event


class EventUseCases(EventAccess):
    # --- events ---
    async def create_event(self, ctx: RequestContext, body: EventIn) -> dict[str, Any]:
        user_id = user_of(ctx)
        domain.validate_event(body.starts_at, body.ends_at, body.visibility, body.group_id)
        if not await self.is_manager(ctx, body.organization_id):
            raise Forbidden("only the organization's owner or moderators create its events")
        if body.group_id and await self.users.group_organization(
                ctx, body.group_id) != body.organization_id:
            raise Unprocessable("group_id is not a group of this organization")
        values = body.model_dump() | {"id": str(uuid.uuid4()), "status": "draft",
                                      "created_by": user_id}
        if body.cover_media_id:
            await self.attach_cover(ctx, body.cover_media_id, values["id"],
                                    body.organization_id)
        async with UnitOfWork(self.sessions, "event", ctx) as uow:
            row = (await uow.session.execute(insert(events).values(**values)
                                             .returning(events))).mappings().one()
            uow.publish("event.created", changed_payload(row), aggregate_id=row["id"])
        await self.changed(row["id"])
        return (await self.with_covers(ctx, [event_view(dict(row))]))[0]

    async def get_event(self, ctx: RequestContext, event_id: str) -> dict[str, Any]:
        view = event_view(await self.visible_event(ctx, event_id))
        return (await self.with_covers(ctx, [view]))[0]

    async def update_event(self, ctx: RequestContext, event_id: str,
                           body: EventUpdate) -> dict[str, Any]:
        event = await self.event(event_id)
        await self.require_manager(ctx, event)
        domain.editable(event["status"])
        changes = body.model_dump(exclude_unset=True)
        if None in (changes.get("title", ""), changes.get("starts_at", 0),
                    changes.get("ends_at", 0)):
            raise Unprocessable("title, starts_at and ends_at cannot be null")
        merged = event | changes
        domain.validate_event(merged["starts_at"], merged["ends_at"], merged["visibility"],
                              merged["group_id"])
        old_cover = event.get("cover_media_id")
        new_cover = changes.get("cover_media_id", old_cover)
        if new_cover and new_cover != old_cover:
            await self.attach_cover(ctx, new_cover, event_id, event["organization_id"])
        async with UnitOfWork(self.sessions, "event", ctx) as uow:
            row = (await uow.session.execute(
                update(events).where(events.c.id == event_id)
                .values(**changes, updated_at=func.now()).returning(events))).mappings().one()
            uow.publish("event.updated", {**changed_payload(row), "changed": sorted(changes)},
                        aggregate_id=event_id)
        if old_cover and new_cover != old_cover and self.covers is not None:
            await self.covers.detach_cover(ctx, old_cover, event_id)
        await self.inventory.call_if_active(event_id, "refresh")
        await self.changed(event_id)
        return (await self.with_covers(ctx, [event_view(dict(row))]))[0]

    async def transition(self, ctx: RequestContext, event_id: str, action: str) -> dict[str, Any]:
        event = await self.event(event_id)
        await self.require_manager(ctx, event)
        new = domain.transition_event(event["status"], action)
        async with UnitOfWork(self.sessions, "event", ctx) as uow:
            row = (await uow.session.execute(
                update(events).where(events.c.id == event_id,
                                     events.c.status == event["status"])
                .values(status=new.value, updated_at=func.now())
                .returning(events))).mappings().first()
            if row is None:  # changed by someone else meanwhile
                domain.transition_event((await self.event(event_id))["status"], action)
                raise Conflict("the event changed meanwhile; retry", slug="conflict")
            if action in LIFECYCLE_EVENTS:
                uow.publish(LIFECYCLE_EVENTS[action], changed_payload(row),
                            aggregate_id=event_id)
        await self.inventory.call_if_active(event_id, "refresh")
        await self.changed(event_id)
        return event_view(dict(row))

    async def set_hot(self, ctx: RequestContext, event_id: str, hot: bool) -> dict[str, Any]:
        """Declare the event hot (its inventory gets a host process of its own, started now,
        ahead of a big sale) or not; organizers and platform administrators."""
        event = await self.event(event_id)
        if not (ctx.identity is not None and ctx.identity.is_admin):
            await self.require_manager(ctx, event)
        domain.editable(event["status"])
        async with self.sessions.begin() as session:
            await session.execute(update(events).where(events.c.id == event_id)
                                  .values(hot=hot, updated_at=func.now()))
        placed = await self.inventory.declare_hot(event_id, hot)
        return {"event_id": event_id, "hot": hot, "host": placed["host"]}

    async def list_events(self, ctx: RequestContext, filters: EventFilters) -> dict[str, Any]:
        query = select(events)
        if not (filters.organization_id
                and await self.is_manager(ctx, filters.organization_id)):
            query = query.where(self._visible_clause(ctx))
        if filters.organization_id:
            query = query.where(events.c.organization_id == filters.organization_id)
        if filters.status:
            query = query.where(events.c.status == filters.status)
        if filters.starts_after:
            query = query.where(events.c.starts_at >= filters.starts_after)
        if filters.starts_before:
            query = query.where(events.c.starts_at < filters.starts_before)
        if filters.q:
            query = query.where(events.c.title.ilike(f"%{escape_like(filters.q)}%"))
        query = paging.keyset(query, events.c.starts_at, events.c.id, filters.cursor,
                              filters.limit)
        async with self.sessions() as session:
            rows = [dict(r) for r in (await session.execute(query)).mappings().all()]
        page, cursor = paging.split(rows, filters.limit, "starts_at", "id")
        items = await self.with_covers(ctx, [event_view(r) for r in page])
        return {"items": items, "next_cursor": cursor}

    def _visible_clause(self, ctx: RequestContext) -> Any:
        listed = events.c.status != domain.EventStatus.DRAFT
        public = events.c.visibility == "public"
        if ctx.identity is None:
            return and_(listed, public)
        groups = select(group_members.c.group_id).where(
            group_members.c.user_id == ctx.identity.user_id)
        return and_(listed, or_(public, events.c.group_id.in_(groups)))

    # --- ticket types ---
    async def list_ticket_types(self, ctx: RequestContext, event_id: str) -> dict[str, Any]:
        async with self.sessions() as session:  # one session (one connection) for the reads
            if not await self.can_see(ctx, await self.event(event_id, session)):
                raise NotFound(f"no event {event_id}")
            rows = (await session.execute(
                select(ticket_types).where(ticket_types.c.event_id == event_id)
                .order_by(ticket_types.c.created_at, ticket_types.c.id))).mappings().all()
            taken = await seats_taken(session, event_id)
        return {"items": [ticket_type_view(dict(r), max(r["quantity"] - taken.get(r["id"], 0), 0))
                          for r in rows], "next_cursor": None}

    async def seats_left(self, ctx: RequestContext, event_id: str) -> dict[str, Any]:
        """Seats left per ticket type and in all, for other services (they decide who may
        know): the inventory owner's counts when it is in memory, else the committed state it
        would start from (quantity less confirmed and held seats)."""
        event = await self.event(event_id)
        live = await self.inventory.call_if_active(event["id"], "ready")
        async with self.sessions() as session:
            rows = (await session.execute(
                select(ticket_types.c.id, ticket_types.c.name, ticket_types.c.quantity)
                .where(ticket_types.c.event_id == event["id"])
                .order_by(ticket_types.c.created_at, ticket_types.c.id))).all()
            taken = {} if live else await seats_taken(session, event["id"])
        counts = (live or {}).get("ticket_types", {})
        items = [{"id": r.id, "name": r.name, "quantity": r.quantity,
                  "available": (int(counts[r.id]["available"]) if r.id in counts
                                else max(r.quantity - taken.get(r.id, 0), 0))}
                 for r in rows]
        return {"event_id": event["id"], "ticket_types": items,
                "seats_left": sum(i["available"] for i in items),
                "source": "inventory" if live else "committed"}

    async def create_ticket_type(self, ctx: RequestContext, event_id: str,
                                 body: TicketTypeIn) -> dict[str, Any]:
        event = await self.event(event_id)
        await self.require_manager(ctx, event)
        domain.editable(event["status"])
        rules = rules_of(body)
        domain.validate_ticket_type(rules)
        async with self.sessions.begin() as session:
            row = (await session.execute(insert(ticket_types).values(
                id=str(uuid.uuid4()), event_id=event_id, name=body.name, **columns_of(rules))
                .returning(ticket_types))).mappings().one()
        await self.inventory.call_if_active(event_id, "refresh")
        return ticket_type_view(dict(row))

    async def update_ticket_type(self, ctx: RequestContext, event_id: str, ticket_type_id: str,
                                 body: TicketTypeIn) -> dict[str, Any]:
        event = await self.event(event_id)
        await self.require_manager(ctx, event)
        domain.editable(event["status"])
        rules = rules_of(body)
        domain.validate_ticket_type(rules)
        async with self.sessions.begin() as session:
            old = (await session.execute(
                select(ticket_types).where(ticket_types.c.id == ticket_type_id,
                                           ticket_types.c.event_id == event_id)
                .with_for_update())).mappings().first()
            if old is None:
                raise NotFound(f"no ticket type {ticket_type_id}")
            domain.check_quantity_change(event["status"], old["quantity"], rules.quantity)
            row = (await session.execute(
                update(ticket_types).where(ticket_types.c.id == ticket_type_id)
                .values(name=body.name, **columns_of(rules)).returning(ticket_types))
                   ).mappings().one()
        await self.inventory.call_if_active(event_id, "refresh")
        return ticket_type_view(dict(row))


async def seats_taken(session: AsyncSession, event_id: str) -> dict[str, int]:
    """Seats per ticket type that are confirmed or held, as committed (for listings; the
    inventory actor alone decides)."""
    confirmed = (select(registrations.c.ticket_type_id.label("tt"),
                        registrations.c.quantity.label("n"))
                 .where(registrations.c.event_id == event_id,
                        registrations.c.status.in_(domain.TICKET_ISSUED)))
    held = (select(reservations.c.ticket_type_id.label("tt"), reservations.c.quantity.label("n"))
            .where(reservations.c.event_id == event_id, reservations.c.status == "held"))
    both = union_all(confirmed, held).subquery()
    rows = await session.execute(select(both.c.tt, func.sum(both.c.n)).group_by(both.c.tt))
    return {tt: int(n) for tt, n in rows.all()}


def rules_of(body: TicketTypeIn) -> domain.TicketTypeRules:
    return domain.TicketTypeRules(body.price.amount, body.price.currency, body.quantity,
                                  body.per_user_limit, body.prepayment_amount,
                                  body.sales_start, body.sales_end)


def columns_of(rules: domain.TicketTypeRules) -> dict[str, Any]:
    return {"price": rules.price, "currency": rules.currency, "quantity": rules.quantity,
            "per_user_limit": rules.per_user_limit,
            "prepayment_amount": rules.prepayment_amount,
            "sales_start": rules.sales_start, "sales_end": rules.sales_end}


def changed_payload(row: Any) -> dict[str, Any]:
    return {"event_id": row["id"], "organization_id": row["organization_id"],
            "title": row["title"], "starts_at": row["starts_at"].isoformat(),
            "status": row["status"], "visibility": row["visibility"],
            "updated_at": row["updated_at"].isoformat()}


def escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


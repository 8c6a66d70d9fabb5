"""Typed client of the event service (``serve.events.deployment.EventService``)."""

from __future__ import annotations

from typing import Any, cast

from serve.common.clients import ClientBase
from serve.common.context import RequestContext
from serve.events.schemas import (
    CheckInIn,
    EventFilters,
    EventIn,
    EventUpdate,
    RegistrationIn,
    TicketTypeIn,
    WaitlistIn,
)

View = dict[str, Any]


class EventClient(ClientBase):
    async def _view(self, method: str, *args: Any) -> View:
        return cast(View, await self.transport.call(method, *args))

    # --- events ---
    async def list_events(self, ctx: RequestContext, filters: EventFilters) -> View:
        return await self._view("list_events", ctx, filters)

    async def create_event(self, ctx: RequestContext, body: EventIn) -> View:
        return await self._view("create_event", ctx, body)

    async def get_event(self, ctx: RequestContext, event_id: str) -> View:
        return await self._view("get_event", ctx, event_id)

    async def update_event(self, ctx: RequestContext, event_id: str, body: EventUpdate) -> View:
        return await self._view("update_event", ctx, event_id, body)

    async def transition_event(self, ctx: RequestContext, event_id: str, action: str) -> View:
        return await self._view("transition_event", ctx, event_id, action)

    async def set_hot(self, ctx: RequestContext, event_id: str, hot: bool) -> View:
        return await self._view("set_hot", ctx, event_id, hot)

    async def list_ticket_types(self, ctx: RequestContext, event_id: str) -> View:
        return await self._view("list_ticket_types", ctx, event_id)

    async def seats_left(self, ctx: RequestContext, event_id: str) -> View:
        """``{event_id, ticket_types: [{id, name, quantity, available}], seats_left, source}``
        (``source``: ``inventory`` from the live owner, ``committed`` from the stored state)."""
        return await self._view("seats_left", ctx, event_id)

    async def create_ticket_type(self, ctx: RequestContext, event_id: str,
                                 body: TicketTypeIn) -> View:
        return await self._view("create_ticket_type", ctx, event_id, body)

    async def update_ticket_type(self, ctx: RequestContext, event_id: str, ticket_type_id: str,
                                 body: TicketTypeIn) -> View:
        return await self._view("update_ticket_type", ctx, event_id, ticket_type_id, body)

    # --- registrations ---
    async def register(self, ctx: RequestContext, event_id: str, body: RegistrationIn,
                       idempotency_key: str | None) -> View:
        return await self._view("register", ctx, event_id, body, idempotency_key)

    async def get_registration(self, ctx: RequestContext, registration_id: str) -> View:
        return await self._view("get_registration", ctx, registration_id)

    async def cancel_registration(self, ctx: RequestContext, registration_id: str) -> View:
        return await self._view("cancel_registration", ctx, registration_id)

    async def check_in(self, ctx: RequestContext, registration_id: str, body: CheckInIn) -> View:
        return await self._view("check_in", ctx, registration_id, body)

    async def ticket_png(self, ctx: RequestContext, registration_id: str) -> bytes:
        return cast(bytes, await self.transport.call("ticket_png", ctx, registration_id))

    async def event_registrations(self, ctx: RequestContext, event_id: str,
                                  cursor: str | None) -> View:
        return await self._view("event_registrations", ctx, event_id, cursor)

    async def my_registrations(self, ctx: RequestContext, cursor: str | None) -> View:
        return await self._view("my_registrations", ctx, cursor)

    async def join_waitlist(self, ctx: RequestContext, event_id: str, body: WaitlistIn) -> View:
        return await self._view("join_waitlist", ctx, event_id, body)

    async def leave_waitlist(self, ctx: RequestContext, event_id: str) -> None:
        await self.transport.call("leave_waitlist", ctx, event_id)

    # --- for other services ---
    async def can_manage_event(self, ctx: RequestContext, event_id: str) -> bool:
        return bool(await self.transport.call("can_manage_event", ctx, event_id))

    async def registration_for_service(self, ctx: RequestContext,
                                       registration_id: str) -> View | None:
        return cast(View | None, await self.transport.call(
            "registration_for_service", ctx, registration_id))

    async def event_for_service(self, ctx: RequestContext, event_id: str) -> View | None:
        return cast(View | None, await self.transport.call("event_for_service", ctx, event_id))

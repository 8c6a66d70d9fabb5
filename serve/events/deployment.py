"""Serve deployment of the event service: typed async methods other deployments call."""

from __future__ import annotations

import asyncio
from typing import Any

from ray.serve.handle import DeploymentHandle

from actors.client import InventoryClient
from serve.common.cache import EventCacheInvalidator
from serve.common.clients import ServiceClient
from serve.common.context import RequestContext, bound
from serve.common.service import ServiceBase
from serve.events.handlers import EventHandlers, Handler
from serve.events.registrations import RegistrationUseCases
from serve.events.schemas import (
    CheckInIn,
    EventFilters,
    EventIn,
    EventUpdate,
    RegistrationIn,
    TicketTypeIn,
    WaitlistIn,
)
from serve.events.service import EventUseCases
from serve.events.sweep import sweep_forever
from serve.media.client import MediaClient
from serve.users.client import UserClient


class EventService(ServiceBase):
    service = "event"

    async def __init__(self, config: dict[str, Any], user: DeploymentHandle,  # type: ignore[misc]
                       media: DeploymentHandle) -> None:
        super().__init__(config)
        timeout = self.settings.service_call_timeout_seconds
        self.user = UserClient(ServiceClient("user", user, timeout))
        self.media = MediaClient(ServiceClient("media", media, timeout))
        self.inventory = InventoryClient(config)
        self.events = EventUseCases(self.settings, self.sessions, self.user, self.inventory)
        self.events.changed = EventCacheInvalidator(self.settings).invalidate
        self.events.covers = self.media
        self.registrations = RegistrationUseCases(self.settings, self.sessions, self.user,
                                                  self.inventory)
        self.handlers = EventHandlers(self.inventory)
        # The shared inventory hosts start with the service, so no sale waits for a process.
        self.hosts = asyncio.get_running_loop().create_task(asyncio.to_thread(
            self.inventory.start_hosts))
        self.sweeper = asyncio.get_running_loop().create_task(sweep_forever(
            self.sessions, self.inventory, self.settings.reservation_sweep_seconds,
            self.settings.event_reminder_offsets_minutes))

    def message_handlers(self) -> dict[str, Handler]:
        """routing key -> ``async (uow, envelope)``, for the consumer runtime."""
        return self.handlers.handlers()

    # --- events ---
    async def create_event(self, ctx: RequestContext, body: EventIn) -> dict[str, Any]:
        with bound(ctx):
            return await self.events.create_event(ctx, body)

    async def get_event(self, ctx: RequestContext, event_id: str) -> dict[str, Any]:
        with bound(ctx):
            return await self.events.get_event(ctx, event_id)

    async def list_events(self, ctx: RequestContext, filters: EventFilters) -> dict[str, Any]:
        with bound(ctx):
            return await self.events.list_events(ctx, filters)

    async def update_event(self, ctx: RequestContext, event_id: str,
                           body: EventUpdate) -> dict[str, Any]:
        with bound(ctx):
            return await self.events.update_event(ctx, event_id, body)

    async def transition_event(self, ctx: RequestContext, event_id: str,
                               action: str) -> dict[str, Any]:
        with bound(ctx):
            return await self.events.transition(ctx, event_id, action)

    async def set_hot(self, ctx: RequestContext, event_id: str, hot: bool) -> dict[str, Any]:
        with bound(ctx):
            return await self.events.set_hot(ctx, event_id, hot)

    async def list_ticket_types(self, ctx: RequestContext, event_id: str) -> dict[str, Any]:
        with bound(ctx):
            return await self.events.list_ticket_types(ctx, event_id)

    async def seats_left(self, ctx: RequestContext, event_id: str) -> dict[str, Any]:
        """For other services (analytics): seats left per ticket type, from the inventory."""
        from serve.events.handlers import canonical

        with bound(ctx):
            return await self.events.seats_left(ctx, canonical(event_id))

    async def create_ticket_type(self, ctx: RequestContext, event_id: str,
                                 body: TicketTypeIn) -> dict[str, Any]:
        with bound(ctx):
            return await self.events.create_ticket_type(ctx, event_id, body)

    async def update_ticket_type(self, ctx: RequestContext, event_id: str, ticket_type_id: str,
                                 body: TicketTypeIn) -> dict[str, Any]:
        with bound(ctx):
            return await self.events.update_ticket_type(ctx, event_id, ticket_type_id, body)

    # --- registrations ---
    async def register(self, ctx: RequestContext, event_id: str, body: RegistrationIn,
                       idempotency_key: str | None) -> dict[str, Any]:
        with bound(ctx):
            return await self.registrations.register(ctx, event_id, body, idempotency_key)

    async def get_registration(self, ctx: RequestContext, registration_id: str) -> dict[str, Any]:
        with bound(ctx):
            return await self.registrations.get_registration(ctx, registration_id)

    async def cancel_registration(self, ctx: RequestContext,
                                  registration_id: str) -> dict[str, Any]:
        with bound(ctx):
            return await self.registrations.cancel_registration(ctx, registration_id)

    async def check_in(self, ctx: RequestContext, registration_id: str,
                       body: CheckInIn) -> dict[str, Any]:
        with bound(ctx):
            return await self.registrations.check_in(ctx, registration_id, body)

    async def ticket_png(self, ctx: RequestContext, registration_id: str) -> bytes:
        with bound(ctx):
            return await self.registrations.ticket_png(ctx, registration_id)

    async def event_registrations(self, ctx: RequestContext, event_id: str,
                                  cursor: str | None) -> dict[str, Any]:
        with bound(ctx):
            return await self.registrations.event_registrations(ctx, event_id, cursor)

    async def my_registrations(self, ctx: RequestContext, cursor: str | None) -> dict[str, Any]:
        with bound(ctx):
            return await self.registrations.my_registrations(ctx, cursor)

    async def join_waitlist(self, ctx: RequestContext, event_id: str,
                            body: WaitlistIn) -> dict[str, Any]:
        with bound(ctx):
            return await self.registrations.join_waitlist(ctx, event_id, body)

    async def leave_waitlist(self, ctx: RequestContext, event_id: str) -> None:
        with bound(ctx):
            await self.registrations.leave_waitlist(ctx, event_id)

    # --- for other services (Payment, Notification, Analytics) ---
    async def can_manage_event(self, ctx: RequestContext, event_id: str) -> bool:
        """Whether the caller is an owner or moderator of the event's organization."""
        from serve.common.errors import NotFound
        from serve.events.handlers import canonical

        try:
            event = await self.events.event(canonical(event_id))
        except NotFound:
            return False
        return await self.events.is_manager(ctx, event["organization_id"])

    async def registration_for_service(self, ctx: RequestContext,
                                       registration_id: str) -> dict[str, Any] | None:
        """A registration as the payment service needs it (no access check: internal)."""
        from actors.store import load_registration
        from serve.events.views import registration_view

        with bound(ctx):
            async with self.sessions() as session:
                row = await load_registration(session, registration_id)
            return registration_view(row) if row else None

    async def event_for_service(self, ctx: RequestContext, event_id: str) -> dict[str, Any] | None:
        from serve.common.errors import NotFound
        from serve.events.views import event_view

        with bound(ctx):
            try:
                return event_view(await self.events.event(event_id))
            except NotFound:
                return None

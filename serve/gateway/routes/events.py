"""Event routes: events, lifecycle, ticket types, registrations, check-in, tickets, waiting lists.

Reserving seats is the hot path: once an event is known to this gateway replica, ``POST
/events/{id}/registrations`` calls the event's inventory host directly (one hop from the
ingress), batched with concurrent requests for the same host. The first request for an event
goes through the event service, which checks that the event exists and that the caller may see
it; unknown ids therefore never activate an owner.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request, Response

from serve.common.bounded import BoundedDict
from serve.common.context import RequestContext
from serve.common.errors import NotFound, ProblemError
from serve.events.schemas import (
    CheckInIn,
    EventFilters,
    EventIn,
    EventUpdate,
    RegistrationIn,
    TicketTypeIn,
    WaitlistIn,
)
from serve.gateway.deps import PublicContext, ServicesDep, UserContext

router = APIRouter(prefix="/api/v1", tags=["events"])
# The hot path alone, mounted first: Serve (for its metrics) and then FastAPI match a request
# against the routes in order, so a reservation is matched by the first route tried.
reserve_router = APIRouter(prefix="/api/v1", tags=["events"])
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]


async def inventory(request: Request) -> Any:
    """The gateway replica's client of the inventory actors (created on first use)."""
    state = request.app.state
    if getattr(state, "inventory", None) is None:
        from actors.client import InventoryClient

        state.inventory = InventoryClient(state.settings.to_runtime())
        state.known_events = BoundedDict(state.settings.memory_cache_entries)
    return state.inventory


Inventory = Annotated[Any, Depends(inventory)]


@router.get("/events", summary="List events (public, and group events of your groups)")
async def list_events(ctx: PublicContext, services: ServicesDep,
                      filters: Annotated[EventFilters, Query()]) -> Any:
    return await services.event.list_events(ctx, filters)


@router.post("/events", status_code=201, summary="Create an event (draft)")
async def create_event(ctx: UserContext, services: ServicesDep, body: EventIn) -> Any:
    return await services.event.create_event(ctx, body)


@router.get("/events/{event_id}", summary="Read an event")
async def get_event(event_id: str, ctx: PublicContext, services: ServicesDep) -> Any:
    return await services.event.get_event(ctx, event_id)


@router.put("/events/{event_id}", summary="Change an event")
async def update_event(event_id: str, ctx: UserContext, services: ServicesDep,
                       body: EventUpdate) -> Any:
    return await services.event.update_event(ctx, event_id, body)


def _lifecycle(action: str, summary: str) -> None:
    async def transition(event_id: str, ctx: UserContext, services: ServicesDep) -> Any:
        return await services.event.transition_event(ctx, event_id, action)

    transition.__name__ = f"{action}_event"
    router.add_api_route(f"/events/{{event_id}}/{action}", transition, methods=["POST"],
                         summary=summary)


for _action, _summary in (("publish", "Publish a draft"), ("unpublish", "Back to draft"),
                          ("cancel", "Cancel the event"), ("complete", "Mark it completed")):
    _lifecycle(_action, _summary)


@router.post("/events/{event_id}/hot", summary="Declare the event hot: its inventory gets a "
             "host process of its own, started now (organizers, admins)")
async def declare_hot(event_id: str, ctx: UserContext, services: ServicesDep) -> Any:
    return await services.event.set_hot(ctx, event_id, True)


@router.delete("/events/{event_id}/hot", summary="The event's inventory returns to the shared "
               "hosts (organizers, admins)")
async def undeclare_hot(event_id: str, ctx: UserContext, services: ServicesDep) -> Any:
    return await services.event.set_hot(ctx, event_id, False)


@router.get("/events/{event_id}/ticket-types", summary="Ticket types with availability")
async def list_ticket_types(event_id: str, ctx: PublicContext, services: ServicesDep) -> Any:
    return await services.event.list_ticket_types(ctx, event_id)


@router.post("/events/{event_id}/ticket-types", status_code=201, summary="Add a ticket type")
async def create_ticket_type(event_id: str, ctx: UserContext, services: ServicesDep,
                             body: TicketTypeIn) -> Any:
    return await services.event.create_ticket_type(ctx, event_id, body)


@router.put("/events/{event_id}/ticket-types/{ticket_type_id}", summary="Change a ticket type")
async def update_ticket_type(event_id: str, ticket_type_id: str, ctx: UserContext,
                             services: ServicesDep, body: TicketTypeIn) -> Any:
    return await services.event.update_ticket_type(ctx, event_id, ticket_type_id, body)


@router.get("/events/{event_id}/registrations", summary="Participants (per visibility)")
async def event_registrations(event_id: str, ctx: UserContext, services: ServicesDep,
                              cursor: str | None = None) -> Any:
    return await services.event.event_registrations(ctx, event_id, cursor)


@reserve_router.post("/events/{event_id}/registrations", status_code=201,
             summary="Register: reserve seats (Idempotency-Key makes retries safe)")
async def register(event_id: str, ctx: UserContext, services: ServicesDep,
                   inventory: Inventory, request: Request, body: RegistrationIn,
                   idempotency_key: IdempotencyKey = None) -> Any:
    key = idempotency_key or uuid.uuid4().hex
    known: BoundedDict[str, bool] = request.app.state.known_events
    if event_id not in known:
        try:
            result = await services.event.register(ctx, event_id, body, key)
        except ProblemError as exc:
            if not isinstance(exc, NotFound):  # the event exists and is visible: go direct
                known[event_id] = True
            raise
        known[event_id] = True
    else:
        result = await reserve_direct(inventory, ctx, event_id, body, key)
    # The hot path's answer: serialized once, by orjson, without FastAPI's encoder.
    return Response(orjson.dumps(result), status_code=201, media_type="application/json")


async def reserve_direct(inventory: Any, ctx: RequestContext, event_id: str,
                         body: RegistrationIn, key: str) -> Any:
    assert ctx.identity is not None
    return await inventory.reserve(event_id, ctx.identity.user_id, body.ticket_type_id,
                                   body.quantity, body.payment_mode, key, ctx.correlation_id)


@router.get("/registrations/{registration_id}", summary="A registration (ticket code if yours)")
async def get_registration(registration_id: str, ctx: UserContext,
                           services: ServicesDep) -> Any:
    return await services.event.get_registration(ctx, registration_id)


@router.post("/registrations/{registration_id}/cancel", summary="Cancel your registration")
async def cancel_registration(registration_id: str, ctx: UserContext,
                              services: ServicesDep) -> Any:
    return await services.event.cancel_registration(ctx, registration_id)


@router.post("/registrations/{registration_id}/check-in", summary="Check in (organizers)")
async def check_in(registration_id: str, ctx: UserContext, services: ServicesDep,
                   body: CheckInIn) -> Any:
    return await services.event.check_in(ctx, registration_id, body)


@router.get("/registrations/{registration_id}/ticket", response_class=Response,
            responses={200: {"content": {"image/png": {}}}}, summary="The ticket's QR code")
async def ticket(registration_id: str, ctx: UserContext, services: ServicesDep) -> Response:
    png = await services.event.ticket_png(ctx, registration_id)
    return Response(png, media_type="image/png")


@router.post("/events/{event_id}/waitlist", status_code=201, summary="Join the waiting list")
async def join_waitlist(event_id: str, ctx: UserContext, services: ServicesDep,
                        body: WaitlistIn) -> Any:
    return await services.event.join_waitlist(ctx, event_id, body)


@router.delete("/events/{event_id}/waitlist", status_code=204, summary="Leave the waiting list")
async def leave_waitlist(event_id: str, ctx: UserContext, services: ServicesDep) -> Response:
    await services.event.leave_waitlist(ctx, event_id)
    return Response(status_code=204)


@router.get("/users/me/registrations", summary="Your registrations")
async def my_registrations(ctx: UserContext, services: ServicesDep,
                           cursor: str | None = None) -> Any:
    return await services.event.my_registrations(ctx, cursor)

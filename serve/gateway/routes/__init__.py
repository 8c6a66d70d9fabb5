"""Public ``/api/v1`` routes, one module per service area; each forwards to its service."""

from __future__ import annotations

from fastapi import APIRouter


def all_routers() -> list[APIRouter]:
    """Every router the gateway mounts (one import per service area)."""
    from serve.gateway.routes import analytics, events, media, notifications, payments, users

    return [events.reserve_router, users.router, payments.router, events.router, analytics.router,
            notifications.router, media.router, media.files]

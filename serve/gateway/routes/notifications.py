"""Notification routes: templates, preferences, announcements and their jobs, the delivery log,
the Telegram webhook."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, status

from serve.common.errors import BadRequest
from serve.gateway.deps import PublicContext, ServicesDep, UserContext
from serve.notifications.schemas import (
    JobOut,
    LogPage,
    PreferencesIO,
    SendIn,
    TelegramLinkOut,
    TemplateIn,
    TemplateList,
    TemplateOut,
    WebhookOut,
)

router = APIRouter(prefix="/api/v1", tags=["notifications"])


@router.get("/notifications/templates", response_model=TemplateList,
            summary="Every message template per key and locale (saved or default)")
async def list_templates(ctx: UserContext, services: ServicesDep) -> Any:
    return await services.notification.list_templates(ctx)


@router.put("/notifications/templates/{key}", response_model=TemplateOut,
            summary="Change a template (admins); rendered against sample data first, 422 "
                    "when it fails")
async def put_template(key: str, body: TemplateIn, ctx: UserContext,
                       services: ServicesDep) -> Any:
    return await services.notification.put_template(ctx, key, body.locale, body.body)


@router.get("/notifications/preferences", response_model=PreferencesIO,
            summary="The caller's notification preferences")
async def get_preferences(ctx: UserContext, services: ServicesDep) -> Any:
    return await services.notification.get_preferences(ctx)


@router.put("/notifications/preferences", response_model=PreferencesIO,
            summary="Telegram on/off, per-type opt-out, quiet hours (tickets, receipts and "
                    "cancellations are never suppressed)")
async def put_preferences(body: PreferencesIO, ctx: UserContext, services: ServicesDep) -> Any:
    return await services.notification.put_preferences(
        ctx, body.model_dump(exclude={"never_suppressed"}))


@router.post("/notifications/send", response_model=JobOut,
             status_code=status.HTTP_202_ACCEPTED,
             summary="An announcement: organizers to their event's registrants, admins to users")
async def send(body: SendIn, ctx: UserContext, services: ServicesDep) -> Any:
    return await services.notification.send(ctx, body.model_dump())


@router.get("/notifications/jobs/{job_id}", response_model=JobOut,
            summary="An announcement job with its counts by status")
async def get_job(job_id: str, ctx: UserContext, services: ServicesDep) -> Any:
    return await services.notification.get_job(ctx, job_id)


@router.get("/notifications/log", response_model=LogPage,
            summary="Delivery log: the caller's own, an event's (organizers), all (admins)")
async def notification_log(ctx: UserContext, services: ServicesDep,
                           event_id: Annotated[str | None, Query()] = None,
                           cursor: Annotated[str | None, Query()] = None,
                           limit: Annotated[int, Query(ge=1, le=200)] = 50) -> Any:
    return await services.notification.notification_log(ctx, event_id, cursor, limit)


@router.post("/telegram/webhook", response_model=WebhookOut,
             summary="Bot API updates (checked by X-Telegram-Bot-Api-Secret-Token)")
async def telegram_webhook(request: Request, ctx: PublicContext, services: ServicesDep,
                           secret: Annotated[str | None, Header(
                               alias="X-Telegram-Bot-Api-Secret-Token")] = None) -> Any:
    try:
        update = await request.json()
    except ValueError as exc:
        raise BadRequest("the body is not a JSON Bot API update", slug="invalid-update") from exc
    return await services.notification.telegram_update(ctx, secret, update)


@router.post("/users/me/telegram-link", response_model=TelegramLinkOut, tags=["users"],
             summary="A t.me deep link that links this account to the Telegram chat opening it")
async def telegram_link(ctx: UserContext, services: ServicesDep) -> Any:
    return await services.notification.telegram_link(ctx)

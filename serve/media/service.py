"""Use cases of the media service: upload, variants, metadata, signed URLs, delete, covers,
the cleanup sweep. Objects are written before their row and removed when the row is not
written, so a refusal leaves nothing behind; the sweep removes what a crash left."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cluster.settings import Settings
from messaging.outbox import UnitOfWork
from serve.common.context import RequestContext
from serve.common.errors import (
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    Unprocessable,
    UnsupportedMediaType,
)
from serve.common.logs import get_logger
from serve.media import domain, images, variants
from serve.media.domain import IMAGES, PDF, Purpose, Status
from serve.users.client import UserClient
from storage.media import event_states, media
from storage.objects import ObjectStore

log = get_logger("media")
MODERATORS = frozenset({"owner", "moderator"})
# Media whose variants are being made at once per replica (each job is three Ray tasks); the
# others wait holding only their id, their original is read from the store when their turn comes.
PARALLEL_JOBS = 4


def parse_id(value: str | None, what: str = "media") -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound(f"no such {what}") from None


def view(row: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": str(row.id), "purpose": row.purpose,
        "organization_id": str(row.organization_id) if row.organization_id else None,
        "uploader_id": str(row.uploader_id), "status": row.status,
        "content_type": row.content_type, "bytes": row.bytes,
        "width": row.width, "height": row.height, "file_name": row.file_name,
        "variants": {name: {k: v[k] for k in ("width", "height", "bytes", "content_type")}
                     for name, v in (row.variants or {}).items()},
        "created_at": row.created_at,
    }
    if row.failure_reason:
        out["failure_reason"] = row.failure_reason
    return out


class MediaUseCases:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession],
                 store: ObjectStore, user: UserClient) -> None:
        self.settings = settings
        self.sessions = sessions
        self.store = store
        self.user = user
        self.pending: set[asyncio.Task[None]] = set()
        self.jobs = asyncio.Semaphore(PARALLEL_JOBS)

    def uow(self, ctx: RequestContext | None = None) -> UnitOfWork:
        return UnitOfWork(self.sessions, "media", ctx)

    async def _role(self, ctx: RequestContext, organization_id: Any) -> str | None:
        if ctx.identity is None or organization_id is None:
            return None
        return await self.user.organization_role(ctx, ctx.identity.user_id, str(organization_id))

    # --- upload ---
    async def upload(self, ctx: RequestContext, purpose: str, organization_id: str | None,
                     file_name: str | None, declared: str | None,
                     data: bytes) -> dict[str, Any]:
        if ctx.identity is None:
            raise Unauthorized("uploads need an access token")
        try:
            kind = Purpose(purpose)
        except ValueError:
            raise Unprocessable("purpose is one of event_cover, avatar, document") from None
        org: uuid.UUID | None = None
        if organization_id:
            org = parse_id(organization_id, "organization")
            if await self._role(ctx, org) is None and not ctx.identity.is_admin:
                raise Forbidden("only the organization's members upload its media")
        elif kind is Purpose.EVENT_COVER:
            raise Unprocessable("an event cover needs organization_id")
        found = domain.sniff(data[:domain.SNIFF_BYTES])
        domain.check_declaration(found, declared, file_name)
        domain.allowed_for(kind, found)
        limit = domain.limit_for(found, self.settings.media_max_image_bytes,
                                 self.settings.media_max_document_bytes)
        if len(data) > limit:
            raise PayloadTooLarge(f"a {found} file takes at most {limit} bytes", limit=limit)
        width = height = None
        if found in IMAGES:
            if domain.has_polyglot_tail(data):
                raise UnsupportedMediaType("the image also carries an archive",
                                                  slug="polyglot-file")
            decoded = await asyncio.to_thread(images.decode_image, data, found,
                                              self.settings.media_max_pixels)
            stored, width, height = decoded.data, decoded.width, decoded.height
        else:
            await asyncio.to_thread(images.check_pdf, data)
            stored = data
        media_id = uuid.uuid4()
        key = domain.object_key(media_id.hex, "original", found)
        status = Status.PROCESSING if found in IMAGES else Status.READY
        await self.store.put(key, stored, found)
        try:
            async with self.uow(ctx) as uow:
                row = (await uow.session.execute(media.insert().values(
                    id=media_id, purpose=kind.value, organization_id=org,
                    uploader_id=uuid.UUID(ctx.identity.user_id), status=status.value,
                    content_type=found, bytes=len(stored), width=width, height=height,
                    file_name=domain.clean_file_name(file_name), object_key=key,
                    variants={}).returning(*media.c))).one()
                uow.publish("media.uploaded", {
                    "media_id": str(media_id), "purpose": kind.value,
                    "organization_id": str(org) if org else None,
                    "uploader_id": ctx.identity.user_id, "content_type": found,
                    "bytes": len(stored)}, aggregate_id=str(media_id))
        except BaseException:
            await self.store.delete(key)
            raise
        if status is Status.PROCESSING:
            task = asyncio.get_running_loop().create_task(self.make_variants(media_id, key))
            self.pending.add(task)
            task.add_done_callback(self.pending.discard)
        return view(row)

    async def make_variants(self, media_id: uuid.UUID, original_key: str) -> None:
        async with self.jobs:
            await self._make_variants(media_id, original_key)

    async def _make_variants(self, media_id: uuid.UUID, original_key: str) -> None:
        written: list[str] = []
        try:
            data = await self.store.get(original_key)
            made = await variants.make_all(data, self.settings.media_max_pixels)
            del data
            described: dict[str, Any] = {}
            for name, (blob, width, height) in made.items():
                key = domain.object_key(media_id.hex, name, "image/webp")
                await self.store.put(key, blob, "image/webp")
                written.append(key)
                described[name] = {"key": key, "width": width, "height": height,
                                   "bytes": len(blob), "content_type": "image/webp"}
            async with self.sessions() as session, session.begin():
                result = await session.execute(update(media).where(media.c.id == media_id)
                                               .values(status=Status.READY.value,
                                                       variants=described,
                                                       updated_at=datetime.now(UTC)))
            if not result.rowcount:  # type: ignore[attr-defined]  # deleted meanwhile
                for key in written:
                    await self.store.delete(key)
        except Exception as exc:
            log.warning("variants of %s failed: %s", media_id, exc)
            for key in written:
                await self.store.delete(key)
            async with self.sessions() as session, session.begin():
                await session.execute(update(media).where(media.c.id == media_id).values(
                    status=Status.FAILED.value, failure_reason=str(exc)[:500],
                    updated_at=datetime.now(UTC)))

    async def settle(self) -> None:
        """Wait for the variants being made (tests, shutdown)."""
        while self.pending:
            await asyncio.gather(*list(self.pending), return_exceptions=True)

    # --- reading ---
    async def load(self, media_id: str) -> Any:
        """The row, with ``cover_public``: whether the event it is the cover of is public."""
        joined = media.outerjoin(event_states,
                                 event_states.c.event_id == media.c.attached_event_id)
        async with self.sessions() as session:
            row = (await session.execute(
                select(media, func.coalesce(event_states.c.public, False).label("cover_public"))
                .select_from(joined).where(media.c.id == parse_id(media_id)))).one_or_none()
        if row is None:
            raise NotFound("no such media", slug="media-not-found")
        return row

    async def may_read(self, ctx: RequestContext, row: Any) -> bool:
        """Avatars are public; an event cover to anyone while the event it is attached to is
        published (or completed) and public; otherwise (documents, covers of drafts, cancelled,
        group or no events) only to the uploader, the organization's members and admins."""
        if row.purpose == Purpose.AVATAR.value:
            return True
        if row.purpose == Purpose.EVENT_COVER.value and row.cover_public:
            return True
        if ctx.identity is None:
            return False
        if ctx.identity.is_admin or str(row.uploader_id) == ctx.identity.user_id:
            return True
        return await self._role(ctx, row.organization_id) is not None

    async def get(self, ctx: RequestContext, media_id: str) -> dict[str, Any]:
        row = await self.load(media_id)
        if not await self.may_read(ctx, row):
            raise NotFound("no such media", slug="media-not-found")
        return view(row)

    async def url(self, ctx: RequestContext, media_id: str, variant: str,
                  expires_in: int) -> dict[str, Any]:
        domain.check_expires_in(expires_in)
        row = await self.load(media_id)
        if not await self.may_read(ctx, row):
            raise NotFound("no such media", slug="media-not-found")
        if variant == "original":
            key, content_type = row.object_key, row.content_type
        elif variant in domain.VARIANT_NAMES:
            described = (row.variants or {}).get(variant)
            if described is None:
                raise Conflict(f"the {variant} variant is not ready (status {row.status})",
                               slug="variant-not-ready", status=row.status)
            key, content_type = described["key"], described["content_type"]
        else:
            raise Unprocessable("variant is one of original, thumb, card, cover")
        expires_at = datetime.now(UTC) + timedelta(seconds=expires_in)
        return {"url": await self.store.url(key, expires_in, content_type),
                "expires_at": expires_at}

    async def variant_urls(self, ctx: RequestContext, media_ids: list[str],
                           expires_in: int) -> dict[str, dict[str, str]]:
        """media id -> variant name -> URL, of the ready images (the events' cover links)."""
        wanted = set()
        for value in media_ids:
            try:
                wanted.add(uuid.UUID(str(value)))
            except ValueError:
                continue
        if not wanted:
            return {}
        async with self.sessions() as session:
            rows = (await session.execute(select(media).where(
                media.c.id.in_(wanted), media.c.status == Status.READY.value))).all()
        out: dict[str, dict[str, str]] = {}
        for row in rows:
            out[str(row.id)] = {
                name: await self.store.url(d["key"], expires_in, d["content_type"])
                for name, d in (row.variants or {}).items()}
        return out

    # --- delete ---
    async def delete(self, ctx: RequestContext, media_id: str) -> None:
        row = await self.load(media_id)
        if ctx.identity is None:
            raise Unauthorized("send an access token")
        allowed = (ctx.identity.is_admin or str(row.uploader_id) == ctx.identity.user_id
                   or await self._role(ctx, row.organization_id) in MODERATORS)
        if not allowed:
            if not await self.may_read(ctx, row):
                raise NotFound("no such media", slug="media-not-found")
            raise Forbidden("only the uploader, the organization's owners and moderators, "
                            "and admins delete a medium")
        if row.attached_event_id is not None:
            raise Conflict("the medium is an event's cover; change the cover first",
                           slug="media-in-use", event_id=str(row.attached_event_id))
        await self._remove(ctx, row)

    async def _remove(self, ctx: RequestContext | None, row: Any) -> None:
        async with self.uow(ctx) as uow:
            gone = await uow.session.execute(delete(media).where(
                media.c.id == row.id, media.c.attached_event_id.is_(None)))
            if not gone.rowcount:  # type: ignore[attr-defined]
                raise Conflict("the medium is an event's cover", slug="media-in-use")
            uow.publish("media.deleted", {
                "media_id": str(row.id), "purpose": row.purpose,
                "organization_id": str(row.organization_id) if row.organization_id else None},
                aggregate_id=str(row.id))
        for key in [row.object_key, *(v["key"] for v in (row.variants or {}).values())]:
            await self.store.delete(key)

    # --- event covers (called by the Event service) ---
    async def attach_cover(self, ctx: RequestContext, media_id: str, event_id: str,
                           organization_id: str) -> dict[str, Any]:
        """Make a medium an event's cover: it exists, is ready, an image, of the event's
        organization."""
        try:
            row = await self.load(media_id)
        except NotFound:
            raise Unprocessable("cover_media_id names no medium", slug="invalid-cover") from None
        if str(row.organization_id) != str(organization_id):
            raise Unprocessable("the cover belongs to another organization",
                                slug="invalid-cover")
        if row.content_type not in IMAGES or row.purpose == Purpose.DOCUMENT.value:
            raise Unprocessable("a cover is an image", slug="invalid-cover")
        if row.status != Status.READY.value:
            raise Unprocessable(f"the cover is not ready (status {row.status})",
                                slug="invalid-cover", status=row.status)
        async with self.sessions() as session, session.begin():
            await session.execute(update(media).where(media.c.id == row.id).values(
                attached_event_id=parse_id(event_id, "event"), updated_at=datetime.now(UTC)))
        return view(row)

    async def detach_cover(self, ctx: RequestContext, media_id: str, event_id: str) -> None:
        async with self.sessions() as session, session.begin():
            await session.execute(update(media).where(
                media.c.id == parse_id(media_id),
                media.c.attached_event_id == parse_id(event_id, "event")).values(
                attached_event_id=None, created_at=datetime.now(UTC)))

    # --- cleanup ---
    async def sweep(self, now: datetime | None = None) -> dict[str, int]:
        """Delete event covers never attached older than AFISHA_MEDIA_ORPHAN_HOURS, and
        objects with no row older than an hour (an interrupted upload)."""
        now = now or datetime.now(UTC)
        cutoff = now - timedelta(hours=self.settings.media_orphan_hours)
        async with self.sessions() as session:
            orphans = (await session.execute(select(media).where(
                media.c.purpose == Purpose.EVENT_COVER.value,
                media.c.attached_event_id.is_(None), media.c.created_at < cutoff))).all()
        removed = 0
        for row in orphans:
            try:
                await self._remove(None, row)
                removed += 1
            except Conflict:
                pass
        async with self.sessions() as session:
            known = {r.id.hex for r in (await session.execute(select(media.c.id))).all()}
        stray = 0
        for obj in await self.store.list():
            prefix = obj.key.split("/", 1)[0]
            if prefix not in known and obj.modified < now - timedelta(hours=1):
                await self.store.delete(obj.key)
                stray += 1
        return {"orphans": removed, "objects": stray}


__all__ = ["PDF", "MediaUseCases", "parse_id", "view"]

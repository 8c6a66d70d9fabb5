"""Export jobs of the analytics service: a job's file is written chunk by chunk into
``export_chunks`` by the one worker that holds its claim.

A worker claims a job (``FOR UPDATE SKIP LOCKED``: one claimant at a time) with a token of its
own, drops any chunks an earlier attempt left, and writes a heartbeat with every chunk and at
least every third of ``AFISHA_ANALYTICS_EXPORT_STALE_SECONDS``. Each chunk is inserted in the
transaction that checks the token, so once a job is taken over the old worker cannot add to
it: a job whose worker died (its replica restarted) is taken over by ``resume_stale`` after
that long without a heartbeat, written again from the start, and marked ``done`` once.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, insert, literal_column, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from serve.analytics import domain
from serve.analytics.service import Range
from serve.common.errors import NotFound
from serve.common.logs import get_logger
from storage.analytics import event_meta, export_chunks, exports, revenue_hourly, rollup_hourly

log = get_logger("analytics.exports")
DEFAULT_STALE_SECONDS = 60.0

EXPORT_COLUMNS = ("event_id", "event_title", "hour", "ticket_type_id", "currency",
                  *domain.COUNTERS, "gross", "refunded", "net")
CHUNK_BYTES = 64 * 1024
FETCH_ROWS = 1_000


async def create_export(session: AsyncSession, requested_by: str, scope: str, scope_id: str,
                        fmt: str, rng: Range) -> dict[str, Any]:
    export_id = uuid.uuid4()
    await session.execute(insert(exports).values(
        id=export_id, requested_by=requested_by, scope=scope, scope_id=scope_id, format=fmt,
        range_from=rng.start, range_to=rng.end, status="queued"))
    return {"id": str(export_id), "status": "queued"}


async def load_export(session: AsyncSession, export_id: str) -> Any:
    try:
        key = uuid.UUID(export_id)
    except ValueError as exc:
        raise NotFound("no such export") from exc
    row = (await session.execute(select(exports).where(exports.c.id == key))).mappings().first()
    if row is None:
        raise NotFound("no such export")
    return row


def export_query(scope: str, scope_id: str, rng: Range) -> Any:
    """Rollup rows of the scope in key order; revenue rows beside the counters (one row per
    hour, ticket type and currency; counters on the row without currency)."""
    start = domain.hour_of(rng.start)
    if start < rng.start:
        start += timedelta(hours=1)
    events = select(event_meta.c.event_id, event_meta.c.title)
    events = (events.where(event_meta.c.organization_id == scope_id) if scope == "organization"
              else events.where(event_meta.c.event_id == scope_id))
    ev = events.cte("ev")
    r, m = rollup_hourly, revenue_hourly
    counters = select(
        r.c.event_id, ev.c.title, r.c.hour, r.c.ticket_type_id,
        literal_column("''").label("currency"), *(r.c[n] for n in domain.COUNTERS),
        literal_column("0::bigint").label("gross"), literal_column("0::bigint").label("refunded")
    ).join(ev, ev.c.event_id == r.c.event_id).where(r.c.hour >= start, r.c.hour < rng.end)
    money = select(
        m.c.event_id, ev.c.title, m.c.hour, m.c.ticket_type_id, m.c.currency,
        *(literal_column("0::bigint").label(n) for n in domain.COUNTERS), m.c.gross,
        m.c.refunded
    ).join(ev, ev.c.event_id == m.c.event_id).where(m.c.hour >= start, m.c.hour < rng.end)
    union = counters.union_all(money).subquery()
    return select(union).order_by(union.c.event_id, union.c.hour, union.c.ticket_type_id,
                                  union.c.currency)


class Buffer:
    """Where an export's bytes wait until a chunk is full; remembers its high-water mark."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.high_water = 0

    def write(self, b: bytes) -> None:
        self.data += b
        self.high_water = max(self.high_water, len(self.data))

    def take(self) -> bytes:
        out = bytes(self.data)
        self.data.clear()
        return out


def _cells(row: Any) -> list[Any]:
    values = list(row)
    hour = values[2]
    values[2] = hour.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    gross, refunded = int(values[-2]), int(values[-1])
    return [*values, gross - refunded]


async def stream_rows(session: AsyncSession, scope: str, scope_id: str, rng: Range
                      ) -> AsyncIterator[list[Any]]:
    result = await session.stream(export_query(scope, scope_id, rng).execution_options(
        yield_per=FETCH_ROWS))
    async for partition in result.partitions(FETCH_ROWS):
        for row in partition:
            yield _cells(row)


class CsvWriter:
    """UTF-8 with BOM, formula-looking text cells neutralised."""

    def __init__(self, out: Buffer) -> None:
        self.out = out
        self.text = io.StringIO()
        self.writer = csv.writer(self.text, lineterminator="\r\n")
        out.write("\ufeff".encode())
        self.row(list(EXPORT_COLUMNS))

    def row(self, cells: list[Any]) -> None:
        self.writer.writerow([domain.neutralise(c) for c in cells])
        self.out.write(self.text.getvalue().encode())
        self.text.seek(0)
        self.text.truncate()

    def close(self) -> None:
        return None


class LostClaim(Exception):
    """Another worker took the job over: this one stops without touching it."""


@dataclass(frozen=True)
class Claim:
    job: Any
    token: str


async def claim(sessions: Any, stale_seconds: float, export_id: str | None = None
                ) -> Claim | None:
    """Claim one job: ``export_id`` while it is queued, or else the oldest job queued or
    running without a heartbeat for ``stale_seconds``. Chunks of an earlier attempt go."""
    stale = func.now() - timedelta(seconds=stale_seconds)
    if export_id is not None:
        which = and_(exports.c.id == uuid.UUID(export_id), exports.c.status == "queued")
    else:
        which = or_(and_(exports.c.status == "queued", exports.c.created_at < stale),
                    and_(exports.c.status == "running",
                         func.coalesce(exports.c.heartbeat_at, exports.c.created_at) < stale))
    token = uuid.uuid4().hex
    async with sessions() as session, session.begin():
        found = await session.scalar(select(exports.c.id).where(which)
                                     .order_by(exports.c.created_at).limit(1)
                                     .with_for_update(skip_locked=True))
        if found is None:
            return None
        job = (await session.execute(update(exports).where(exports.c.id == found).values(
            status="running", worker=token, heartbeat_at=func.now(),
            attempts=exports.c.attempts + 1, rows_written=0, bytes_written=0, error=None)
            .returning(exports))).mappings().one()
        await session.execute(delete(export_chunks).where(export_chunks.c.export_id == found))
    return Claim(job, token)


async def beat(session: AsyncSession, held: Claim, **values: Any) -> None:
    """The heartbeat (and ``values``) of a job this worker still holds; else ``LostClaim``."""
    result = await session.execute(update(exports).where(
        exports.c.id == held.job["id"], exports.c.worker == held.token).values(
        heartbeat_at=func.now(), **values))
    if not result.rowcount:  # type: ignore[attr-defined]
        raise LostClaim(f"export {held.job['id']} was taken over")


async def _beat_forever(sessions: Any, held: Claim, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        async with sessions() as session, session.begin():
            await beat(session, held)


async def run_export(sessions: Any, export_id: str, chunk_bytes: int = CHUNK_BYTES,
                     stale_seconds: float = DEFAULT_STALE_SECONDS) -> bool:
    """Claim a queued job and write it; False when another worker has it."""
    held = await claim(sessions, stale_seconds, export_id)
    if held is None:
        return False
    await write_export(sessions, held, chunk_bytes, stale_seconds)
    return True


async def resume_stale(sessions: Any, stale_seconds: float = DEFAULT_STALE_SECONDS,
                       chunk_bytes: int = CHUNK_BYTES) -> list[str]:
    """Take over and write every job whose worker is gone; the ids written."""
    done = []
    while (held := await claim(sessions, stale_seconds)) is not None:
        log.warning("export %s had no heartbeat for %ss (attempt %s): written again",
                    held.job["id"], stale_seconds, held.job["attempts"])
        await write_export(sessions, held, chunk_bytes, stale_seconds)
        done.append(str(held.job["id"]))
    return done


async def write_export(sessions: Any, held: Claim, chunk_bytes: int = CHUNK_BYTES,
                       stale_seconds: float = DEFAULT_STALE_SECONDS) -> None:
    """Write an export's file chunk by chunk: rows stream from a server-side cursor, at most
    one chunk (plus one row) is held. XLSX is written by openpyxl's write-only workbook into
    a temporary file, then copied in chunks. A job lost to another worker is left to it."""
    job = held.job
    rng = Range(job["range_from"], job["range_to"])
    buffer = Buffer()
    seq = 0
    rows = 0
    written = 0

    async def flush(session: AsyncSession, force: bool = False) -> None:
        nonlocal seq, written
        if not buffer.data or (len(buffer.data) < chunk_bytes and not force):
            return
        data = buffer.take()
        await beat(session, held, rows_written=rows)
        await session.execute(insert(export_chunks).values(export_id=job["id"], seq=seq,
                                                           data=data))
        seq += 1
        written += len(data)

    beating = asyncio.get_running_loop().create_task(
        _beat_forever(sessions, held, stale_seconds / 3))
    try:
        async with sessions() as reader, sessions() as writer:
            if job["format"] == "csv":
                out = CsvWriter(buffer)
                async with reader.begin():
                    async for cells in stream_rows(reader, job["scope"], job["scope_id"], rng):
                        out.row(cells)
                        rows += 1
                        if len(buffer.data) >= chunk_bytes:
                            async with writer.begin():
                                await flush(writer)
            else:
                rows = await _xlsx(reader, job, rng, buffer, writer, flush, chunk_bytes)
            async with writer.begin():
                await flush(writer, force=True)
                await beat(writer, held, status="done", rows_written=rows, rows_total=rows,
                           bytes_written=written, max_buffered_bytes=buffer.high_water,
                           finished_at=func.now())
    except LostClaim:
        log.warning("export %s was taken over by another worker", job["id"])
    except Exception as exc:
        with contextlib.suppress(LostClaim):
            async with sessions() as session, session.begin():
                await beat(session, held, status="failed", error=str(exc)[:500],
                           finished_at=func.now())
        raise
    finally:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await beating


async def _xlsx(reader: AsyncSession, job: Any, rng: Range, buffer: Buffer,
                writer: AsyncSession, flush: Any, chunk_bytes: int) -> int:
    import tempfile

    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("analytics")
    ws.append(list(EXPORT_COLUMNS))
    rows = 0
    async with reader.begin():
        async for cells in stream_rows(reader, job["scope"], job["scope_id"], rng):
            ws.append([domain.neutralise(c) for c in cells])
            rows += 1
    with tempfile.TemporaryFile() as tmp:
        wb.save(tmp)
        tmp.seek(0)
        while block := tmp.read(chunk_bytes):
            buffer.write(block)
            async with writer.begin():
                await flush(writer, force=True)
    return rows


async def read_chunk(session: AsyncSession, export_id: str, seq: int) -> bytes | None:
    data = await session.scalar(select(export_chunks.c.data).where(
        export_chunks.c.export_id == uuid.UUID(export_id), export_chunks.c.seq == seq))
    return None if data is None else bytes(data)

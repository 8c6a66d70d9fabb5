"""Media uploads and variants: uploads/s end to end and variants/s, against Pillow doing the
same decode-and-resize work in one plain loop (the ceiling), and the peak RSS during a 10 MB
upload.

The media use cases run in this process (as in the media replica) on a temporary database and
a local store in a temporary directory; each upload decodes, strips and stores the original,
then its three variants are made by Ray tasks (a local Ray started here). The 10 MB upload is a
PDF streamed through the gateway's multipart parser into the service; RSS is this process's,
sampled every 5 ms (psutil), above what it was before.

    python benchmarks/media_variants.py [--count 200] [--concurrency 4] [--megapixels 12]

Needs PostgreSQL (AFISHA_TEST_DATABASE_URL, default postgres@127.0.0.1:5432).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psutil
from PIL import Image, ImageOps

from cluster.settings import Settings
from serve.common.context import Identity, RequestContext
from serve.gateway.routes.media import Upload
from serve.media import domain
from serve.media.images import make_variant
from serve.media.service import MediaUseCases
from serve.users.client import UserClient
from storage import migrate
from storage.engine import create_engine, sessionmaker
from storage.objects import LocalObjectStore

PG = os.environ.get("AFISHA_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
RESULTS = Path(__file__).parent / "results"


class NoUsers:
    name = "user"

    async def call(self, method: str, *args: Any) -> Any:
        raise AssertionError("avatars without an organization ask the user service nothing")


def photo(megapixels: float) -> bytes:
    width = int((megapixels * 1e6 * 4 / 3) ** 0.5)
    height = int(width * 3 / 4)
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    image = Image.merge("RGB", (image.getchannel(0), image.getchannel(0).rotate(90),
                                image.getchannel(0).transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def pillow_loop(data: bytes, count: int) -> float:
    """Seconds for ``count`` decode + upright + re-encode + three variants, in one loop."""
    start = time.perf_counter()
    for _ in range(count):
        image = Image.open(io.BytesIO(data))
        image.load()
        upright = ImageOps.exif_transpose(image) or image
        out = io.BytesIO()
        upright.convert("RGB").save(out, "JPEG", quality=92, optimize=True)
        for variant in domain.VARIANTS:
            make_variant(out.getvalue(), variant, 40_000_000)
    return time.perf_counter() - start


async def create_database() -> tuple[str, str]:
    name = f"afisha_bench_media_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(PG)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    parts = urlsplit(PG)
    return name, urlunsplit((parts.scheme, parts.netloc, f"/{name}", "", ""))


async def drop_database(name: str) -> None:
    conn = await asyncpg.connect(PG)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


class PeakRss:
    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.base = self.proc.memory_info().rss
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def big_pdf(size: int) -> bytes:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    writer.add_attachment("padding.bin", os.urandom(size))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


async def run(count: int, concurrency: int, megapixels: float) -> dict[str, Any]:
    import ray

    name, url = await create_database()
    tmp = Path(tempfile.mkdtemp(prefix="afisha-media-bench-"))
    try:
        settings = Settings(database_url=url, data_dir=tmp, media_store="local")
        await asyncio.to_thread(migrate.upgrade, settings, ["media"])
        ray.init(address="local", num_cpus=os.cpu_count() or 2, include_dashboard=False,
                 logging_level="WARNING")
        engine = create_engine(settings, "media")
        store = LocalObjectStore(tmp / "media", "bench", "http://bench")
        await store.start()
        cases = MediaUseCases(settings, sessionmaker(engine), store,
                              UserClient(NoUsers()))
        ctx = RequestContext(identity=Identity(str(uuid.uuid4())))
        data = photo(megapixels)
        # warm up (Ray workers, imports)
        await cases.upload(ctx, "avatar", None, "w.jpg", "image/jpeg", data)
        await cases.settle()
        pdf = big_pdf(10 * 1024 * 1024 - 4096)
        boundary = b"benchboundary"
        body = (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n'
                b"document\r\n--" + boundary + b'\r\nContent-Disposition: form-data; '
                b'name="file"; filename="big.pdf"\r\nContent-Type: application/pdf\r\n\r\n'
                + pdf + b"\r\n--" + boundary + b"--\r\n")
        with PeakRss() as rss:
            parts = Upload(boundary, settings)
            for i in range(0, len(body), 64 * 1024):
                parts.feed(body[i:i + 64 * 1024])
            parts.parser.finalize()
            await cases.upload(ctx, "document", None, parts.file_name, parts.file_type,
                               bytes(parts.file))
        gate = asyncio.Semaphore(concurrency)
        request_seconds: list[float] = []

        async def one() -> None:
            async with gate:
                t = time.perf_counter()
                await cases.upload(ctx, "avatar", None, "p.jpg", "image/jpeg", data)
                request_seconds.append(time.perf_counter() - t)

        with PeakRss() as during:
            start = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(count)))
            answered = time.perf_counter() - start
            await cases.settle()
            total = time.perf_counter() - start
        baseline_n = max(1, min(count, 20))
        ceiling = await asyncio.to_thread(pillow_loop, data, baseline_n)

        await engine.dispose()
        return {
            "uploads": count, "concurrency": concurrency, "megapixels": megapixels,
            "jpeg_bytes": len(data), "cpus": os.cpu_count(),
            "uploads_answered_per_s": round(count / answered, 2),
            "uploads_ready_per_s": round(count / total, 2),
            "variants_per_s": round(3 * count / total, 2),
            "upload_p50_ms": round(sorted(request_seconds)[len(request_seconds) // 2] * 1000),
            "pillow_loop_uploads_per_s": round(baseline_n / ceiling, 2),
            "pillow_loop_variants_per_s": round(3 * baseline_n / ceiling, 2),
            "pdf_upload_bytes": len(pdf),
            "peak_rss_above_base_mb": round((rss.peak - rss.base) / 2**20, 1),
            "peak_rss_mb": round(rss.peak / 2**20, 1),
            "peak_rss_during_uploads_mb": round(during.peak / 2**20, 1),
        }
    finally:
        ray.shutdown()
        await drop_database(name)
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--megapixels", type=float, default=12)
    args = parser.parse_args()
    result = asyncio.run(run(args.count, args.concurrency, args.megapixels))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "media_variants.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

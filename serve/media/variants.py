"""Variants made off the request path: one Ray task per variant (in parallel across workers),
or a worker thread when there is no Ray (the service run in a plain process, as in tests)."""

from __future__ import annotations

import asyncio
from typing import Any

from serve.media.domain import VARIANTS, Variant
from serve.media.images import make_variant

_remote: Any = None


def _ray_ready() -> bool:
    try:
        import ray

        return bool(ray.is_initialized())
    except ImportError:  # pragma: no cover
        return False


def _task() -> Any:
    global _remote
    if _remote is None:
        import ray

        _remote = ray.remote(num_cpus=0.5, max_retries=1)(make_variant)
    return _remote


async def make_all(data: bytes, max_pixels: int,
                   use_ray: bool | None = None) -> dict[str, tuple[bytes, int, int]]:
    """name -> (webp bytes, width, height) of every variant, made in parallel."""
    if use_ray if use_ray is not None else _ray_ready():
        import ray

        ref = ray.put(data)
        task = _task()
        results = await asyncio.gather(*(task.remote(ref, v, max_pixels) for v in VARIANTS))
    else:
        results = await asyncio.gather(*(asyncio.to_thread(make_variant, data, v, max_pixels)
                                         for v in VARIANTS))
    return {v.name: r for v, r in zip(VARIANTS, results, strict=True)}


def variant_named(name: str) -> Variant:
    return next(v for v in VARIANTS if v.name == name)

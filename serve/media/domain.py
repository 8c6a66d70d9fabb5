"""Pure rules of the media service: what a file is (by its bytes), limits, variant geometry.

The type of an upload is decided by its leading bytes (its signature), never by the declared
``Content-Type`` or the file name; a declaration that names another supported type is a lie
and refused, as is anything outside the supported list (SVG, HTML, scripts, executables...).
``serve.media.images`` then decodes the whole file; only this module's verdicts are pure.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

from serve.common.errors import Unprocessable, UnsupportedMediaType

JPEG, PNG, GIF, WEBP, PDF = "image/jpeg", "image/png", "image/gif", "image/webp", "application/pdf"
IMAGES = frozenset({JPEG, PNG, GIF, WEBP})
EXTENSIONS = {JPEG: "jpg", PNG: "png", GIF: "gif", WEBP: "webp", PDF: "pdf"}
_BY_EXTENSION = {"jpg": JPEG, "jpeg": JPEG, "jpe": JPEG, "png": PNG, "gif": GIF, "webp": WEBP,
                 "pdf": PDF}
# How many leading bytes ``sniff`` needs.
SNIFF_BYTES = 16
MB = 1024 * 1024


class Purpose(StrEnum):
    EVENT_COVER = "event_cover"
    AVATAR = "avatar"
    DOCUMENT = "document"


class Status(StrEnum):
    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class Variant:
    name: str
    width: int
    height: int
    crop: bool  # True: fill the box and cut the overflow; False: shrink to fit inside


VARIANTS: tuple[Variant, ...] = (
    Variant("thumb", 160, 160, True),
    Variant("card", 640, 360, True),
    Variant("cover", 1600, 900, False),
)
VARIANT_NAMES = frozenset(v.name for v in VARIANTS)
MAX_EXPIRES_SECONDS = 7 * 24 * 3600


def sniff(head: bytes) -> str:
    """The supported type the leading bytes announce; 415 for anything else."""
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return GIF
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    if head.startswith(b"%PDF-"):
        return PDF
    if not head:
        raise Unprocessable("the file is empty", slug="empty-file")
    raise UnsupportedMediaType(
        "the content is not a supported type (JPEG, PNG, WebP, GIF or PDF)",
        slug="unsupported-media-type")


def declared_type(content_type: str | None, file_name: str | None) -> set[str]:
    """The supported types a declaration names (header and file extension)."""
    named: set[str] = set()
    if content_type:
        base = content_type.split(";")[0].strip().lower()
        if base == "image/jpg":
            base = JPEG
        if base in IMAGES or base == PDF:
            named.add(base)
    if file_name and "." in file_name:
        ext = file_name.rsplit(".", 1)[1].strip().lower()
        if ext in _BY_EXTENSION:
            named.add(_BY_EXTENSION[ext])
    return named


def check_declaration(found: str, content_type: str | None, file_name: str | None) -> None:
    """A header or extension naming another supported type than the content is refused."""
    named = declared_type(content_type, file_name)
    if named - {found}:
        raise UnsupportedMediaType(
            f"the content is {found}, not what was declared ({', '.join(sorted(named))})",
            slug="media-type-mismatch", found=found)


def limit_for(content_type: str, image_limit: int = 5 * MB, document_limit: int = 10 * MB) -> int:
    return document_limit if content_type == PDF else image_limit


def allowed_for(purpose: Purpose, content_type: str) -> None:
    if purpose is not Purpose.DOCUMENT and content_type not in IMAGES:
        raise UnsupportedMediaType(f"a {purpose.value} must be an image",
                                   slug="unsupported-media-type")


def has_polyglot_tail(data: bytes) -> bool:
    """An image that also carries an archive (a ZIP directory) is refused as a polyglot."""
    return b"PK\x05\x06" in data or b"PK\x03\x04" in data


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def clean_file_name(name: str | None) -> str | None:
    """The user's file name as metadata only: no path, no control characters, bounded."""
    if not name:
        return None
    base = re.split(r"[\\/]", name)[-1]
    base = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C")
    base = _CONTROL.sub("", base).strip().lstrip(".")
    return base[:200] or None


def crop_box(width: int, height: int, box_w: int, box_h: int) -> tuple[int, int, int, int]:
    """The centred region of a ``width``x``height`` image with the aspect of the box."""
    if width * box_h > height * box_w:  # wider than the box: cut the sides
        w = max(1, round(height * box_w / box_h))
        left = (width - w) // 2
        return left, 0, left + w, height
    h = max(1, round(width * box_h / box_w))
    top = (height - h) // 2
    return 0, top, width, top + h


def crop_size(width: int, height: int, box_w: int, box_h: int) -> tuple[int, int]:
    """A crop variant is the box, unless the source is smaller (never enlarged)."""
    left, top, right, bottom = crop_box(width, height, box_w, box_h)
    w, h = right - left, bottom - top
    if w <= box_w:
        return w, h
    return box_w, box_h


def fit_size(width: int, height: int, max_w: int, max_h: int) -> tuple[int, int]:
    """Shrink keeping the aspect so the image fits inside the box (never enlarged)."""
    scale = min(max_w / width, max_h / height, 1.0)
    return max(1, round(width * scale)), max(1, round(height * scale))


def variant_size(variant: Variant, width: int, height: int) -> tuple[int, int]:
    if variant.crop:
        return crop_size(width, height, variant.width, variant.height)
    return fit_size(width, height, variant.width, variant.height)


def check_expires_in(seconds: int) -> int:
    if not 1 <= seconds <= MAX_EXPIRES_SECONDS:
        raise Unprocessable(f"expires_in must be from 1 to {MAX_EXPIRES_SECONDS} seconds",
                            slug="validation-error")
    return seconds


def object_key(media_id: str, name: str, content_type: str) -> str:
    """Generated object names: ``<id hex>/<original|thumb|card|cover>.<ext>``."""
    ext = "webp" if name in VARIANT_NAMES else EXTENSIONS[content_type]
    return f"{media_id.replace('-', '')}/{name}.{ext}"

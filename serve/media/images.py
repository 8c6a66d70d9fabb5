"""Decoding and variants with Pillow (and PDFs with pypdf): run in worker threads or Ray tasks.

A decode is complete (``Image.load``), so a truncated file fails here; the pixel limit is
``Image.MAX_IMAGE_PIXELS`` with ``DecompressionBombWarning`` turned into an error. What is
stored is re-encoded from the decoded pixels, orientation applied: no EXIF, XMP or comments
survive, except for an animated GIF, kept as it came (its variants come from its first frame).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

from serve.common.errors import Unprocessable, UnsupportedMediaType
from serve.media.domain import GIF, JPEG, PNG, WEBP, Variant, crop_box, variant_size

_FORMATS = {"JPEG": JPEG, "PNG": PNG, "GIF": GIF, "WEBP": WEBP}


@dataclass(frozen=True)
class Decoded:
    content_type: str
    width: int
    height: int
    data: bytes  # what is stored as the original
    animated: bool = False


def _open(data: bytes, max_pixels: int) -> Any:
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = max_pixels
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
            image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise Unprocessable(f"the image has too many pixels (limit {max_pixels})",
                                slug="image-too-large") from exc
        except Image.UnidentifiedImageError as exc:
            raise UnsupportedMediaType("the content is not a decodable image",
                                       slug="unsupported-media-type") from exc
        except (OSError, SyntaxError, ValueError) as exc:
            raise Unprocessable(f"the image is truncated or corrupt: {exc}",
                                slug="corrupt-image") from exc
    return image


def decode_image(data: bytes, sniffed: str, max_pixels: int) -> Decoded:
    from PIL import ImageOps

    image = _open(data, max_pixels)
    found = _FORMATS.get(image.format or "")
    if found != sniffed:
        raise UnsupportedMediaType(f"the content decodes as {image.format}, not {sniffed}",
                                   slug="media-type-mismatch")
    if image.width * image.height > max_pixels:
        raise Unprocessable(f"the image has too many pixels (limit {max_pixels})",
                            slug="image-too-large")
    animated = bool(getattr(image, "is_animated", False))
    if animated and sniffed == GIF:
        return Decoded(GIF, image.width, image.height, data, animated=True)
    upright = image
    ImageOps.exif_transpose(upright, in_place=True)  # no copy of the pixels
    out = io.BytesIO()
    if sniffed == JPEG:
        (upright if upright.mode in ("RGB", "L") else upright.convert("RGB")).save(
            out, "JPEG", quality=92, optimize=True)
    elif sniffed == PNG:
        upright.save(out, "PNG", optimize=False)
    elif sniffed == WEBP:
        upright.save(out, "WEBP", quality=90)
    else:
        upright.save(out, "GIF")
    return Decoded(sniffed, upright.width, upright.height, out.getvalue())


def make_variant(data: bytes, variant: Variant, max_pixels: int) -> tuple[bytes, int, int]:
    """One variant as WebP: (bytes, width, height)."""
    from PIL import Image, ImageOps

    image = _open(data, max_pixels)
    image.seek(0)
    frame = ImageOps.exif_transpose(image) or image
    frame = frame.convert("RGBA" if "A" in frame.getbands() or "transparency" in frame.info
                          else "RGB")
    width, height = variant_size(variant, frame.width, frame.height)
    if variant.crop:
        frame = frame.crop(crop_box(frame.width, frame.height, variant.width, variant.height))
    frame = frame.resize((width, height), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    frame.save(out, "WEBP", quality=82, method=4)
    return out.getvalue(), width, height


def check_pdf(data: bytes) -> int:
    """Parse a PDF's structure (no rendering): its page count; 422 when it does not parse."""
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data), strict=True)
        pages = len(reader.pages)
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        raise Unprocessable(f"the PDF does not parse: {exc}", slug="corrupt-document") from exc
    if pages < 1:
        raise Unprocessable("the PDF has no pages", slug="corrupt-document")
    return pages

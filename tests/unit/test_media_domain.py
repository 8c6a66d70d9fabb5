"""Pure rules of the media service, and the Pillow/pypdf decoding it relies on."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from serve.common.errors import Unprocessable, UnsupportedMediaType
from serve.media import domain, images
from serve.media.domain import VARIANTS, Purpose
from storage.objects import LocalObjectStore, sign, valid_key, verify
from tests import media_support as files


@pytest.mark.parametrize(("data", "found"), [
    (files.jpeg(40, 30), domain.JPEG), (files.png(10, 10), domain.PNG),
    (files.animated_gif(), domain.GIF), (files.pdf(), domain.PDF),
    (b"RIFF\x00\x00\x00\x00WEBPVP8 ", domain.WEBP)])
def test_sniff_by_signature(data: bytes, found: str) -> None:
    assert domain.sniff(data[:domain.SNIFF_BYTES]) == found


@pytest.mark.parametrize("data", [files.HTML, files.PHP, files.SVG, b"MZ\x90\x00binary",
                                  b"\x7fELF\x02\x01", b"PK\x03\x04zip"])
def test_unsupported_content_is_415(data: bytes) -> None:
    with pytest.raises(UnsupportedMediaType):
        domain.sniff(data[:domain.SNIFF_BYTES])


def test_empty_is_422() -> None:
    with pytest.raises(Unprocessable):
        domain.sniff(b"")


def test_declaration_must_not_name_another_type() -> None:
    domain.check_declaration(domain.PNG, "image/png", "a.png")
    domain.check_declaration(domain.PNG, "application/octet-stream", "a")
    with pytest.raises(UnsupportedMediaType):
        domain.check_declaration(domain.PNG, "image/jpeg", "a.png")
    with pytest.raises(UnsupportedMediaType):
        domain.check_declaration(domain.PNG, None, "photo.jpg")


def test_limits_and_purposes() -> None:
    assert domain.limit_for(domain.JPEG) == 5 * domain.MB
    assert domain.limit_for(domain.PDF) == 10 * domain.MB
    with pytest.raises(UnsupportedMediaType):
        domain.allowed_for(Purpose.EVENT_COVER, domain.PDF)
    domain.allowed_for(Purpose.DOCUMENT, domain.PDF)


def test_file_name_is_cleaned() -> None:
    assert domain.clean_file_name("../../etc/pass\x00wd\n.png") == "passwd.png"
    assert domain.clean_file_name("..\\..\\x.png") == "x.png"
    assert domain.clean_file_name("") is None
    assert domain.clean_file_name("....") is None


@pytest.mark.parametrize(("size", "variant", "expected"), [
    ((4000, 3000), "thumb", (160, 160)), ((4000, 3000), "card", (640, 360)),
    ((4000, 3000), "cover", (1200, 900)), ((1000, 2000), "cover", (450, 900)),
    ((800, 200), "cover", (800, 200)), ((100, 50), "thumb", (50, 50))])
def test_variant_geometry(size: tuple[int, int], variant: str,
                          expected: tuple[int, int]) -> None:
    v = next(x for x in VARIANTS if x.name == variant)
    assert domain.variant_size(v, *size) == expected


def test_crop_box_is_centred_with_the_box_aspect() -> None:
    assert domain.crop_box(4000, 3000, 160, 160) == (500, 0, 3500, 3000)
    left, top, right, bottom = domain.crop_box(4000, 3000, 640, 360)
    assert (left, right) == (0, 4000) and bottom - top == 2250


def test_expires_in_bounds() -> None:
    assert domain.check_expires_in(1) == 1
    with pytest.raises(Unprocessable):
        domain.check_expires_in(0)
    with pytest.raises(Unprocessable):
        domain.check_expires_in(7 * 24 * 3600 + 1)


def test_keys_are_generated() -> None:
    key = domain.object_key("0f" * 16, "original", domain.JPEG)
    assert valid_key(key) and key.endswith("/original.jpg")
    assert not valid_key("../etc/passwd") and not valid_key("ab/../../x.jpg")


def test_decode_strips_exif_and_applies_orientation() -> None:
    original = files.jpeg(400, 200, gps=True, orientation=6)
    assert files.has_gps(original)
    decoded = images.decode_image(original, domain.JPEG, 40_000_000)
    assert (decoded.width, decoded.height) == (200, 400)  # rotated upright
    assert not files.has_gps(decoded.data)
    assert not Image.open(io.BytesIO(decoded.data)).getexif()


def test_bomb_truncated_and_mismatch() -> None:
    with pytest.raises(Unprocessable, match="pixels"):
        images.decode_image(files.bomb_png(), domain.PNG, 40_000_000)
    with pytest.raises(Unprocessable):
        images.decode_image(files.jpeg(400, 300)[:2000], domain.JPEG, 40_000_000)


def test_variants_are_webp_of_their_geometry() -> None:
    source = files.jpeg(1000, 500)
    for variant in VARIANTS:
        data, width, height = images.make_variant(source, variant, 40_000_000)
        image = Image.open(io.BytesIO(data))
        assert image.format == "WEBP" and image.size == (width, height)
        assert (width, height) == domain.variant_size(variant, 1000, 500)


def test_animated_gif_keeps_original() -> None:
    gif = files.animated_gif()
    decoded = images.decode_image(gif, domain.GIF, 40_000_000)
    assert decoded.animated and decoded.data == gif


def test_pdf_structure() -> None:
    assert images.check_pdf(files.pdf()) == 1
    with pytest.raises(Unprocessable):
        images.check_pdf(b"%PDF-1.7\n garbage")


async def test_local_store_and_signatures(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path, "secret", "http://gw")
    await store.start()
    key = domain.object_key("ab" * 16, "original", domain.PNG)
    await store.put(key, b"x", "image/png")
    assert await store.get(key) == b"x"
    assert [o.key for o in await store.list()] == [key]
    url = await store.url(key, 60, "image/png")
    assert url.startswith(f"http://gw/media-files/{key}?expires=")
    expires = int(url.split("expires=")[1].split("&")[0])
    assert verify("secret", key, expires, sign("secret", key, expires))
    assert not verify("secret", key, expires, sign("other", key, expires))
    assert not verify("secret", key, expires, sign("secret", key, expires), now=expires + 1)
    await store.delete(key)
    assert await store.list() == []
    with pytest.raises(KeyError):
        await store.get(key)
    assert not [p for p in await store.list() if p.key.endswith(".tmp")]


@pytest.mark.parametrize(("fmt", "found"), [("PNG", domain.PNG), ("WEBP", domain.WEBP),
                                            ("JPEG", domain.JPEG)])
def test_every_format_loses_its_exif_and_is_upright(fmt: str, found: str) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x8825] = {1: "N", 2: (55.0, 45.0, 21.0)}
    out = io.BytesIO()
    Image.new("RGB", (50, 40), (1, 2, 3)).save(out, fmt, exif=exif.tobytes())
    assert files.has_gps(out.getvalue())
    decoded = images.decode_image(out.getvalue(), found, 40_000_000)
    assert (decoded.width, decoded.height) == (40, 50)
    assert not files.has_gps(decoded.data) and b"Exif" not in decoded.data

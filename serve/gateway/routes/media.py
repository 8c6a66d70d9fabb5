"""Media routes: streamed uploads, metadata, signed URLs, delete, the local store's files.

``POST /media/upload`` parses the multipart body as it arrives (python-multipart's streaming
parser over ``request.stream()``): the file part's first bytes decide its type and so its limit
(5 MB images, 10 MB PDF), and the read that passes it answers 413 without reading the rest. A
declared ``Content-Length`` past the largest limit is refused before anything is read.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from cluster.settings import Settings
from serve.common.errors import BadRequest, Forbidden, PayloadTooLarge, UnsupportedMediaType
from serve.gateway.deps import PublicContext, ServicesDep, UserContext
from serve.media import domain
from serve.media.schemas import MediaOut, MediaUrlOut
from storage.objects import LocalObjectStore, signing_key, valid_key, verify

router = APIRouter(prefix="/api/v1", tags=["media"])
files = APIRouter(tags=["media"])
FIELD_LIMIT = 1024  # purpose, organization_id
OVERHEAD = 64 * 1024  # multipart framing and the small fields


class Upload:
    """The parts of one multipart upload, the file's limit enforced while it streams."""

    def __init__(self, boundary: bytes, settings: Settings) -> None:
        self.settings = settings
        self.fields: dict[str, str] = {}
        self.file = bytearray()
        self.file_name: str | None = None
        self.file_type: str | None = None
        self.limit = max(settings.media_max_image_bytes, settings.media_max_document_bytes)
        self._name = ""
        self._is_file = False
        self._value = bytearray()
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, str] = {}
        self.read = 0
        self.parser = MultipartParser(boundary, {
            "on_part_begin": self._begin, "on_part_data": self._data,
            "on_part_end": self._end, "on_header_field": self._hfield,
            "on_header_value": self._hvalue, "on_header_end": self._hend,
            "on_headers_finished": self._headers_done})

    def feed(self, chunk: bytes) -> None:
        self.read += len(chunk)
        self.parser.write(chunk)

    def _begin(self) -> None:
        self._headers, self._value = {}, bytearray()

    def _hfield(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _hvalue(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _hend(self) -> None:
        self._headers[self._header_field.decode("latin-1").lower()] = \
            self._header_value.decode("utf-8", "replace")
        self._header_field, self._header_value = bytearray(), bytearray()

    def _headers_done(self) -> None:
        _, options = parse_options_header(self._headers.get("content-disposition", ""))
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        self._is_file = self._name == "file"
        if self._is_file:
            if self.file or self.file_type is not None:
                raise BadRequest("send one file")
            self.file_name = filename.decode("utf-8", "replace") if filename else None
            self.file_type = self._headers.get("content-type")

    def _data(self, data: bytes, start: int, end: int) -> None:
        if not self._is_file:
            self._value += data[start:end]
            if len(self._value) > FIELD_LIMIT:
                raise BadRequest(f"field {self._name!r} is too long")
            return
        before = len(self.file)
        self.file += data[start:end]
        if before < domain.SNIFF_BYTES <= len(self.file):
            self._limit_by_type()
        if len(self.file) > self.limit:
            raise PayloadTooLarge(f"the file is larger than {self.limit} bytes",
                                  limit=self.limit)

    def _limit_by_type(self) -> None:
        try:
            found = domain.sniff(bytes(self.file[:domain.SNIFF_BYTES]))
        except UnsupportedMediaType:
            raise
        self.limit = domain.limit_for(found, self.settings.media_max_image_bytes,
                                      self.settings.media_max_document_bytes)

    def _end(self) -> None:
        if self._is_file:
            if 0 < len(self.file) < domain.SNIFF_BYTES:
                self._limit_by_type()
        elif self._name:
            self.fields[self._name] = self._value.decode("utf-8", "replace")
        self._is_file = False


@router.post("/media/upload", response_model=MediaOut, status_code=201,
             summary="Upload an image or a PDF (multipart: file, purpose, organization_id)",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "multipart/form-data": {"schema": {
                     "type": "object", "required": ["file", "purpose"], "properties": {
                         "file": {"type": "string", "format": "binary"},
                         "purpose": {"type": "string",
                                     "enum": ["event_cover", "avatar", "document"]},
                         "organization_id": {"type": "string", "format": "uuid"}}}}}}})
async def upload(request: Request, ctx: UserContext, services: ServicesDep) -> Any:
    settings: Settings = request.app.state.settings
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise UnsupportedMediaType("send multipart/form-data", slug="multipart-required")
    parts = Upload(boundary, settings)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > parts.limit + OVERHEAD:
        raise PayloadTooLarge(f"the body is larger than {parts.limit} bytes", limit=parts.limit)
    request.state.media_bytes_read = 0
    try:
        async for chunk in request.stream():
            parts.feed(chunk)
            request.state.media_bytes_read = parts.read
        parts.parser.finalize()
    except (UnicodeError, MultipartParseError) as exc:  # headers a browser would never send
        raise BadRequest(f"the multipart body is malformed ({type(exc).__name__})",
                         slug="malformed-multipart") from exc
    if parts.file_type is None and not parts.file:
        raise BadRequest("the file part is missing", slug="file-required")
    purpose = parts.fields.get("purpose")
    if not purpose:
        raise BadRequest("the purpose field is missing", slug="purpose-required")
    data = bytes(parts.file)
    parts.file.clear()  # one copy of the file is held while the media replica works on it
    return await services.media.upload(ctx, purpose, parts.fields.get("organization_id") or None,
                                       parts.file_name, parts.file_type, data)


@router.get("/media/{media_id}", response_model=MediaOut, summary="A medium and its variants")
async def get_media(media_id: str, ctx: PublicContext, services: ServicesDep) -> Any:
    return await services.media.get_media(ctx, media_id)


@router.get("/media/{media_id}/url", response_model=MediaUrlOut,
            summary="A time-limited URL of the original or a variant")
async def media_url(media_id: str, ctx: PublicContext, services: ServicesDep,
                    variant: Annotated[str, Query(
                        pattern="^(original|thumb|card|cover)$")] = "original",
                    expires_in: Annotated[int, Query(ge=1, le=domain.MAX_EXPIRES_SECONDS)]
                    = 3600) -> Any:
    return await services.media.media_url(ctx, media_id, variant, expires_in)


@router.delete("/media/{media_id}", status_code=204, response_class=Response,
               summary="Delete a medium and every variant (409 while it is an event's cover)")
async def delete_media(media_id: str, ctx: UserContext, services: ServicesDep) -> Response:
    await services.media.delete_media(ctx, media_id)
    return Response(status_code=204)


@files.get("/media-files/{key:path}", response_class=FileResponse,
           summary="A file of the local store, by a signed URL (403 when tampered or expired)")
async def media_file(key: str, request: Request,
                     expires: Annotated[int, Query()] = 0,
                     signature: Annotated[str, Query()] = "") -> FileResponse:
    settings: Settings = request.app.state.settings
    if not valid_key(key) or not verify(signing_key(settings), key, expires, signature):
        raise Forbidden("the link is invalid or has expired", slug="invalid-signature")
    store = LocalObjectStore(settings.data_dir / "media", signing_key(settings), "")
    path = store.path(key)
    if not path.is_file():
        raise Forbidden("the link is invalid or has expired", slug="invalid-signature")
    ext = key.rsplit(".", 1)[1]
    content_type = {"jpg": domain.JPEG, "png": domain.PNG, "gif": domain.GIF,
                    "webp": domain.WEBP, "pdf": domain.PDF}.get(ext, "application/octet-stream")
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=300",
               "Content-Security-Policy": "default-src 'none'; sandbox"}
    if content_type == domain.PDF:
        headers["Content-Disposition"] = "attachment"
    return FileResponse(path, media_type=content_type, headers=headers)

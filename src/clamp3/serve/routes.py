"""The JSON API: HTTP in, calls to the catalog / renderer / upload area, HTTP out.

No search, file or model logic lives here; domain errors raised below are turned into JSON
error responses by the handlers in ``app.py``.
"""

from __future__ import annotations

import hmac
import os
from pathlib import PurePosixPath
from typing import Annotated, NamedTuple
from urllib.parse import quote

from fastapi import APIRouter, Depends, File, Header, Path, Query, Request, UploadFile
from fastapi.responses import Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from clamp3.index.filters import MAX_WHERE_CHARS
from clamp3.serve.catalog import MAX_RESULTS, Catalog, Page
from clamp3.serve.errors import Forbidden, NotFound, RangeNotSatisfiable, Unauthorized, Unprocessable
from clamp3.serve.media import RENDERABLE_KINDS, content_type, iter_bytes, media_kind, parse_range
from clamp3.serve.render import Renderer
from clamp3.serve.schemas import (
    MAX_QUERY_CHARS,
    WHERE_HELP,
    AdminResult,
    Error,
    Facets,
    Health,
    Item,
    Modality,
    Result,
    SearchRequest,
    SearchResponse,
)
from clamp3.serve.uploads import upload_suffix
from clamp3.utils.reasons import printable

router = APIRouter(prefix="/api")
bearer = HTTPBearer(auto_error=False, description="the admin token given to the server (CLAMP3_ADMIN_TOKEN)")

KQuery = Annotated[int, Query(ge=1, le=100, description="results per page")]
OffsetQuery = Annotated[int, Query(ge=0, lt=MAX_RESULTS, description="results to skip")]
ModalityQuery = Annotated[Modality | None, Query(description="only results of this modality")]
WhereQuery = Annotated[str | None, Query(max_length=MAX_WHERE_CHARS, description=WHERE_HELP)]


class PageParams(NamedTuple):
    """The paging and filter parameters of every search route, in the order the catalog's
    search methods take them (``catalog.search_text(q, *params)``)."""

    k: int
    offset: int
    modality: Modality | None
    where: str | None


def _page_params(
    k: KQuery = 10, offset: OffsetQuery = 0, modality: ModalityQuery = None, where: WhereQuery = None
) -> PageParams:
    return PageParams(k, offset, modality, where)


PageQuery = Annotated[PageParams, Depends(_page_params)]
ItemIdPath = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$", description="an item id from a search result")]
UploadIdPath = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="upload_id of a file search")]
ERRORS: dict[int | str, dict] = {status: {"model": Error} for status in (400, 404, 422, 503)}
MEDIA_ERRORS: dict[int | str, dict] = {**ERRORS, 403: {"model": Error}}  # files refused for leaving the root
SVG_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def _catalog(request: Request) -> Catalog:
    return request.app.state.catalog


def _links(identifier: str, kind: str) -> dict[str, str | None]:
    base = f"/api/items/{identifier}"
    return {
        "file_url": f"{base}/file",
        "render_url": f"{base}/render" if kind in RENDERABLE_KINDS else None,
        "similar_url": f"{base}/similar",
    }


def _response(
    page: Page, query: dict[str, str | None], params: PageParams, upload_id: str | None = None
) -> SearchResponse:
    """The answer of a search; ``query`` (what was searched) gets the filters of ``params``."""
    results = [Result(**vars(r), **_links(r.id, r.kind)) for r in page.results]
    query = query | {"modality": params.modality, "where": params.where}
    return SearchResponse(
        query=query, results=results, total=page.total, offset=page.offset, k=page.k, upload_id=upload_id
    )


def _upload_query(request: Request, upload_id: str, fields: dict[str, str]) -> dict:
    """The ``query`` of a file search; an image's adds the ``caption`` it was searched as."""
    caption = _catalog(request).upload_caption(upload_id)
    return {"type": "file", **fields, **({"caption": caption} if caption else {})}


@router.get("/health", response_model=Health, summary="Service status and index size")
def health(request: Request) -> Health:
    settings = request.app.state.settings
    return Health(
        **_catalog(request).health(),
        max_upload_bytes=settings.max_upload_bytes,
        max_audio_seconds=settings.max_audio_seconds,
    )


@router.get("/facets", response_model=Facets, summary="Filterable columns and their values")
def facets(request: Request) -> Facets:
    return Facets(columns=_catalog(request).facets())


@router.get("/search", response_model=SearchResponse, responses=ERRORS, summary="Search by text")
def search(
    request: Request,
    q: Annotated[
        str, Query(min_length=1, max_length=MAX_QUERY_CHARS, description="query text, any language")
    ],
    params: PageQuery,
) -> SearchResponse:
    found = _catalog(request).search_text(q, *params)
    return _response(found, {"type": "text", "q": q}, params)


@router.post("/search", response_model=SearchResponse, responses=ERRORS, summary="Search by text (JSON body)")
def search_json(request: Request, body: SearchRequest) -> SearchResponse:
    params = PageParams(body.k, body.offset, body.modality, body.where)
    return _response(_catalog(request).search_text(body.q, *params), {"type": "text", "q": body.q}, params)


@router.post(
    "/search/file",
    response_model=SearchResponse,
    responses={**ERRORS, 413: {"model": Error}, 415: {"model": Error}},
    summary="Search by an uploaded score, MIDI, audio or image file (an image by its caption)",
)
def search_file(
    request: Request,
    file: Annotated[
        UploadFile,
        File(description="a score (.xml .mxl .abc), MIDI (.mid .mtf), audio or image (.png .jpg .webp) file"),
    ],
    params: PageQuery,
) -> SearchResponse:
    suffix = upload_suffix(file.filename)
    limit = request.app.state.settings.max_upload_bytes
    name = PurePosixPath((file.filename or "").replace("\\", "/")).name[:200]
    with request.app.state.uploads.store(file.file, suffix, limit) as (path, digest):
        upload_id = digest[:32]
        found = _catalog(request).search_upload(path, upload_id, name, *params)
    return _response(found, _upload_query(request, upload_id, {"name": name}), params, upload_id)


@router.get(
    "/uploads/{upload_id}/similar",
    response_model=SearchResponse,
    responses=ERRORS,
    summary="More pages of a file search",
)
def upload_similar(
    request: Request,
    upload_id: UploadIdPath,
    params: PageQuery,
) -> SearchResponse:
    found = _catalog(request).search_recent_upload(upload_id, *params)
    query = _upload_query(request, upload_id, {"upload_id": upload_id})
    return _response(found, query, params, upload_id)


@router.get("/items/{item_id}", response_model=Item, responses=ERRORS, summary="Item metadata")
def item(request: Request, item_id: ItemIdPath) -> Item:
    info = _catalog(request).item(item_id)
    return Item(**info, **_links(item_id, info["kind"]))


@router.get(
    "/items/{item_id}/similar",
    response_model=SearchResponse,
    responses=MEDIA_ERRORS,
    summary="More like this item",
)
def item_similar(
    request: Request,
    item_id: ItemIdPath,
    params: PageQuery,
) -> SearchResponse:
    found = _catalog(request).similar(item_id, *params)
    return _response(found, {"type": "item", "id": item_id}, params)


def _disposition(name: str, inline: bool) -> str:
    ascii_name = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in name) or "file"
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(printable(name), safe='')}"


@router.head("/items/{item_id}/file", include_in_schema=False)  # players probe sizes with HEAD
@router.get(
    "/items/{item_id}/file",
    response_class=Response,
    responses={**MEDIA_ERRORS, 206: {"description": "a byte range"}, 416: {"model": Error}},
    summary="The item's file (audio streams with HTTP range requests)",
)
def item_file(
    request: Request,
    item_id: ItemIdPath,
    range_header: Annotated[str | None, Header(alias="range", description="e.g. bytes=0-1023")] = None,
) -> Response:
    path = _catalog(request).media_path(item_id)
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by iter_bytes when the stream ends
        stat = os.fstat(handle.fileno())  # size of the file actually opened
    except OSError as exc:  # removed or unreadable since it was resolved
        raise NotFound(f"this item's file cannot be read ({exc.strerror})") from exc
    try:
        wanted = parse_range(range_header, stat.st_size)
    except RangeNotSatisfiable:
        handle.close()
        raise
    headers = {
        "accept-ranges": "bytes",
        "etag": f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"',
        "content-disposition": _disposition(path.name, media_kind(path.name) == "audio"),
        "cache-control": "private, max-age=3600",
    }
    start, length, status = 0, stat.st_size, 200
    if wanted is not None:
        start, length, status = wanted.start, wanted.length, 206
        headers["content-range"] = wanted.content_range
    headers["content-length"] = str(length)
    media_type = content_type(path.name)
    if request.method == "HEAD":
        handle.close()
        return Response(status_code=status, headers=headers, media_type=media_type)
    return StreamingResponse(iter_bytes(handle, start, length), status, headers, media_type=media_type)


@router.get(
    "/items/{item_id}/render",
    response_class=Response,
    responses={
        **MEDIA_ERRORS,
        200: {"content": {"image/svg+xml": {}}, "description": "SVG; X-Page-Count header"},
    },
    summary="The item rendered as SVG: sheet music (verovio) or a MIDI piano roll",
)
def item_render(
    request: Request, item_id: ItemIdPath, page: Annotated[int, Query(ge=1, le=10_000)] = 1
) -> Response:
    path = _catalog(request).media_path(item_id)
    if not Renderer.can_render(path):
        raise Unprocessable(
            f"only scores and MIDI files can be rendered; this item is {media_kind(path.name)}"
        )
    drawn = request.app.state.renderer.render(path, page)
    headers = {
        "x-page-count": str(drawn.pages),
        "cache-control": "private, max-age=300",
        "content-security-policy": SVG_POLICY,
    }
    return Response(drawn.svg, media_type="image/svg+xml", headers=headers)


def require_admin(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> None:
    token = request.app.state.settings.admin_token
    if token is None:
        raise Forbidden("admin endpoints are disabled; start clamp3 serve with CLAMP3_ADMIN_TOKEN set")
    given = credentials.credentials if credentials is not None else ""
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise Unauthorized("missing or wrong admin token; send 'Authorization: Bearer <token>'")


ADMIN_ERRORS = {**ERRORS, 401: {"model": Error}, 403: {"model": Error}}


@router.post(
    "/admin/reload",
    response_model=AdminResult,
    responses=ADMIN_ERRORS,
    dependencies=[Depends(require_admin)],
    summary="Re-read the index folder (after `clamp3 index --append`) without dropping requests",
)
def admin_reload(request: Request) -> AdminResult:
    return AdminResult(**_catalog(request).reload())

"""The ASGI application: middleware, error responses, the web page, and the API router.

HTTP only. The service state arrives ready-made (``Catalog``, ``Renderer``, ``UploadArea``,
``Settings``; see :func:`clamp3.serve.service.build_app`) and is kept on ``app.state``.

Every error is JSON ``{"error": code, "message": text, "request_id": id, "details": [...]}``:
domain errors map to 4xx by class, validation errors to 422 (400 for a body that is not JSON),
unknown routes to 404. An unexpected exception is logged with its traceback and answered 500
with the request id; the test suite and the schema fuzzer check that none happens.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from clamp3.serve import errors
from clamp3.serve.catalog import Catalog
from clamp3.serve.guards import BodyLimit, HostGuard, SecurityHeaders
from clamp3.serve.logs import AccessLog, request_id
from clamp3.serve.render import Renderer
from clamp3.serve.routes import router
from clamp3.serve.settings import Settings
from clamp3.serve.uploads import UploadArea
from clamp3.utils.errors import InputError
from clamp3.utils.reasons import printable

log = logging.getLogger(__name__)

HTTP_CODES = {405: "method_not_allowed"}  # statuses no domain error has (the others: errors.code_of_status)
STATIC_FILES = {"app.js": "text/javascript", "app.css": "text/css", "favicon.svg": "image/svg+xml"}
UPLOAD_OVERHEAD = 64 * 1024  # multipart boundaries and part headers around the file


def _error(request: Request, status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    headers = extra.pop("headers", None)
    body = {"error": code, "message": printable(message), "request_id": request_id(request.scope), **extra}
    return JSONResponse(body, status_code=status, headers=headers)


async def _serve_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.ServeError)
    headers = {}
    if isinstance(exc, errors.RangeNotSatisfiable):
        headers["content-range"] = f"bytes */{exc.size}"
    if isinstance(exc, errors.Unauthorized):
        headers["www-authenticate"] = "Bearer"
    return _error(request, exc.status, exc.code, exc.message, headers=headers)


async def _input_error(request: Request, exc: Exception) -> JSONResponse:
    return _error(request, 422, "unprocessable", str(exc))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        {
            "where": ".".join(str(p) for p in e.get("loc", ())),
            "problem": str(e.get("msg", "")),
            "type": e.get("type"),
        }
        for e in exc.errors()
    ]
    if any(p["type"] == "json_invalid" for p in problems):
        return _error(request, 400, "malformed_json", "the request body is not valid JSON", details=problems)
    summary = "; ".join(f"{p['where']}: {p['problem']}" for p in problems[:5])
    return _error(request, 422, "invalid_request", f"invalid request: {summary}", details=problems)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = errors.code_of_status(exc.status_code) or HTTP_CODES.get(exc.status_code)
    code = code or ("bad_request" if exc.status_code < 500 else "server_error")
    message = "no such endpoint; see /openapi.json" if exc.status_code == 404 else str(exc.detail)
    return _error(request, exc.status_code, code, message, headers=getattr(exc, "headers", None))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error", exc_info=exc, extra={"fields": {"request_id": request_id(request.scope)}})
    return _error(request, 500, "server_error", "internal error; quote the request id when reporting it")


def _page_routes(app: FastAPI) -> None:
    static = resources.files("clamp3.serve") / "static"
    files = {name: (static / name).read_bytes() for name in (*STATIC_FILES, "index.html")}

    @app.get("/", include_in_schema=False)
    def page() -> Response:
        return Response(files["index.html"], media_type="text/html; charset=utf-8")

    @app.get("/static/{name}", include_in_schema=False)
    def static_file(name: str) -> Response:
        # A fixed allow-list, read at start-up: no path from the URL ever reaches the disk.
        if name not in STATIC_FILES:
            raise errors.NotFound(f"no static file {name[:80]!r}")
        return Response(files[name], media_type=STATIC_FILES[name], headers={"cache-control": "no-cache"})


def create_app(catalog: Catalog, renderer: Renderer, uploads: UploadArea, settings: Settings) -> FastAPI:
    """The FastAPI application over ready-made service state (closed when the app shuts down)."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if catalog.encoder is not None:
            catalog.encoder.close()
        uploads.close()

    app = FastAPI(
        title="clamp3 search",
        summary="Search a music library by text in any language, by an example file, or by an indexed item.",
        version="1",
        docs_url=None,  # the interactive docs load scripts from a CDN; the schema is enough
        redoc_url=None,
        lifespan=lifespan,
        form_limits={"max_files": 1, "max_fields": 8},
    )
    app.state.catalog, app.state.renderer = catalog, renderer
    app.state.uploads, app.state.settings = uploads, settings
    app.add_exception_handler(errors.ServeError, _serve_error)
    app.add_exception_handler(InputError, _input_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    app.include_router(router)
    _page_routes(app)

    def limit_for(path: str) -> int:
        if path == "/api/search/file":
            return settings.max_upload_bytes + UPLOAD_OVERHEAD
        return settings.json_body_bytes

    # Added innermost first: a request meets AccessLog, then HostGuard, BodyLimit, SecurityHeaders.
    app.add_middleware(SecurityHeaders)
    app.add_middleware(BodyLimit, limit_for=limit_for)
    app.add_middleware(HostGuard, allowed=settings.allowed_hosts)
    app.add_middleware(AccessLog)
    return app

"""Structured logs: one JSON object per line, and one access line per HTTP request.

Access lines carry ``method``, ``path`` (never the query string: queries are what people
searched for), ``status``, ``duration_ms``, ``bytes`` sent, ``client`` and ``request_id``. The
request id is the client's ``X-Request-ID`` when it is a short token, else a fresh one; it is
echoed in the ``X-Request-ID`` response header and in every JSON error body, so a user's
error report can be matched to the log line.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("clamp3.serve.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class JsonFormatter(logging.Formatter):
    """``time``, ``level``, ``logger``, ``message``, the record's ``fields`` dict, and the
    exception text when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def use_json_logging(level: int = logging.INFO) -> None:
    """Make every handler of the root logger (and uvicorn's) write JSON lines to stderr, from
    ``level`` up: the service's own loggers (requests at INFO) and uvicorn's alike."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    for handler in root.handlers:
        handler.setFormatter(JsonFormatter())
    root.setLevel(level)
    logging.getLogger("clamp3").setLevel(level)  # the CLI set it to INFO; a child's level decides
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(level)


def request_id(scope: Scope) -> str | None:
    return scope.get("state", {}).get("request_id")


class HttpMiddleware:
    """The service's ASGI middleware base: other scopes (lifespan, websockets) pass straight
    to ``app``; HTTP requests go to :meth:`http`, which calls ``self.app`` as it sees fit."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.http(scope, receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class AccessLog(HttpMiddleware):
    """ASGI middleware (outermost): assigns the request id and writes the access line."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        incoming = dict(scope.get("headers", [])).get(b"x-request-id", b"").decode("latin-1")
        rid = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        started = time.perf_counter()
        sent = {"status": 500, "bytes": 0}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                sent["status"] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            elif message["type"] == "http.response.body":
                sent["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            client = scope.get("client")
            access_log.info(
                "request",
                extra={
                    "fields": {
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": sent["status"],
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                        "bytes": sent["bytes"],
                        "client": client[0] if client else None,
                        "request_id": rid,
                    }
                },
            )

"""ASGI middleware that refuses requests before the application sees them, and hardens replies.

- :class:`HostGuard`: only the configured ``Host`` names are answered. A page on another site
  can point a DNS name at 127.0.0.1 ("DNS rebinding") and would otherwise read this API from
  the victim's browser; a foreign ``Host`` header gives it a 400 instead.
- :class:`BodyLimit`: request bodies larger than the route's limit get a 413, judged first by
  ``Content-Length`` and then by counting the bytes actually received (chunked uploads
  declare no length), so an oversized upload is cut off, not spooled to disk.
- :class:`SecurityHeaders`: ``nosniff``, no framing, no referrer, and a content security policy
  that lets the page load only its own scripts, styles, images and media.

Each refusal is a JSON body shaped like every other error (see ``app.py``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clamp3.serve.logs import HttpMiddleware, request_id

PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; media-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
# RFC 9110 Host: a reg-name or IPv4 address, or a bracketed IPv6 address, then an optional port.
_HOST = re.compile(r"(?:\[(?P<v6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9._~-]+))(?::[0-9]{1,5})?")


async def send_error(scope: Scope, send: Send, status: int, code: str, message: str) -> None:
    """Send a complete JSON error response from middleware."""
    body = json.dumps({"error": code, "message": message, "request_id": request_id(scope)}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def host_name(header: str) -> str | None:
    """The name in a ``Host`` header (``name``, ``name:port``, ``[v6]`` or ``[v6]:port``),
    lower-cased, or ``None`` when the header is not exactly one of those forms with a port of
    1-5 digits (so ``127.0.0.1:evil.example`` is no 127.0.0.1)."""
    match = _HOST.fullmatch(header.strip().lower())
    if match is None:
        return None
    return match.group("v6") or match.group("name")


class HostGuard(HttpMiddleware):
    """Answers only requests whose ``Host`` name (port ignored) is in ``allowed``; ``None``
    allows all."""

    def __init__(self, app: ASGIApp, allowed: frozenset[str] | None):
        super().__init__(app)
        self.allowed = allowed

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.allowed is not None:
            host = dict(scope.get("headers", [])).get(b"host", b"").decode("latin-1").strip().lower()
            if host_name(host) not in self.allowed:
                await send_error(
                    scope, send, 400, "bad_host", f"this server does not answer for host {host!r}"
                )
                return
        await self.app(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


class BodyLimit(HttpMiddleware):
    """413 for request bodies over ``limit_for(path)`` bytes."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]):
        super().__init__(app)
        self.limit_for = limit_for

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.limit_for(scope["path"])
        message = f"the request body is larger than this endpoint's limit of {_size(limit)}"
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await send_error(scope, send, 400, "bad_request", "the Content-Length header is not a number")
                return
            if int(declared) > limit:
                await send_error(scope, send, 413, "too_large", message)
                return
        state = {"received": 0, "exceeded": False, "started": False}

        async def receive_limited() -> Message:
            incoming = await receive()
            if incoming["type"] == "http.request":
                state["received"] += len(incoming.get("body", b""))
                if state["received"] > limit:
                    state["exceeded"] = True
                    raise _BodyTooLarge
            return incoming

        async def send_unless_cut(outgoing: Message) -> None:
            if state["exceeded"]:
                return  # the application's answer to a cut-off body is replaced by the 413
            if outgoing["type"] == "http.response.start":
                state["started"] = True
            await send(outgoing)

        try:
            await self.app(scope, receive_limited, send_unless_cut)
        except Exception:
            if not state["exceeded"]:
                raise
        if state["exceeded"] and not state["started"]:
            await send_error(scope, send, 413, "too_large", message)


class SecurityHeaders(HttpMiddleware):
    """Adds hardening headers to every response (route-specific ones take precedence)."""

    HEADERS = [
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"cross-origin-resource-policy", b"same-origin"),
        (b"content-security-policy", PAGE_POLICY.encode()),
    ]

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_hardened(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in self.HEADERS if h[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_hardened)


def _size(limit: int) -> str:
    return f"{limit / 2**20:.0f} MB" if limit >= 2**20 else f"{limit // 1024} KB"

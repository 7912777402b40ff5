"""Service settings chosen at start-up (``clamp3 serve`` options)."""

from __future__ import annotations

from dataclasses import dataclass

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class Settings:
    """``max_upload_bytes`` caps query uploads; ``admin_token`` enables ``/api/admin/*`` (``None``:
    disabled); ``allowed_hosts`` are the ``Host`` names answered (``None``: any)."""

    max_upload_bytes: int = 50 * 2**20
    admin_token: str | None = None
    allowed_hosts: frozenset[str] | None = LOCAL_HOSTS
    json_body_bytes: int = 64 * 1024  # every non-upload request body (JSON) is small

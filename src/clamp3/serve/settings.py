"""Service settings chosen at start-up (``clamp3 serve`` options)."""

from __future__ import annotations

from dataclasses import dataclass

from clamp3.preprocess.abc import MAX_UNPACKED_BYTES
from clamp3.serve.content import MAX_AUDIO_SECONDS

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# Real compressed scores unpack to at most ~36x their size (measured on the parity set's .mxl
# files); 64x leaves room while keeping a small upload from claiming much more memory.
UNPACK_RATIO = 64
# An uploaded image is decoded in full before BLIP shrinks it to 384 x 384: 40 MP (a 600-dpi
# scan of an A4 or Letter page is ~35 MP) is 120 MB of RGB per upload at most.
MAX_IMAGE_PIXELS = 40_000_000


@dataclass(frozen=True)
class Settings:
    """``max_upload_bytes`` caps query uploads; ``max_audio_seconds`` caps an uploaded
    recording's length (read from its header before decoding); ``admin_token`` enables
    ``/api/admin/*`` (``None``: disabled); ``allowed_hosts`` are the ``Host`` names answered
    (``None``: any); ``allow_model_mismatch`` serves an index embedded by another model than
    the query model (refused by default: the scores would mean nothing); ``max_image_pixels``
    caps an uploaded image's width x height, read from its header before decoding;
    ``conversion_timeout`` bounds the conversion of an uploaded score or MIDI file (``None``: no
    limit, converted in the request's thread)."""

    max_upload_bytes: int = 50 * 2**20
    max_audio_seconds: float = MAX_AUDIO_SECONDS
    max_image_pixels: int = MAX_IMAGE_PIXELS
    admin_token: str | None = None
    allowed_hosts: frozenset[str] | None = LOCAL_HOSTS
    allow_model_mismatch: bool = False
    json_body_bytes: int = 64 * 1024  # every non-upload request body (JSON) is small
    conversion_timeout: float | None = 60.0  # seconds to convert an uploaded score or MIDI file

    @property
    def max_unpacked_bytes(self) -> int:
        """Cap on an uploaded ``.mxl`` score's unpacked MusicXML, bytes: ``UNPACK_RATIO`` times
        the upload limit, never above the library default (``MAX_UNPACKED_BYTES``, 64 MB)."""
        return min(MAX_UNPACKED_BYTES, UNPACK_RATIO * self.max_upload_bytes)

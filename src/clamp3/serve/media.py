"""Indexed files on disk: what kind each is, where it lives, and which bytes a request wants.

Only files named by the index are ever served, and only from below the media root (the folder
that was embedded: index paths are relative to it). :meth:`MediaRoot.resolve` refuses absolute
paths, ``..`` segments, NUL bytes and anything whose real path (symlinks resolved) leaves the
root, so neither a crafted index record nor a symlink planted in the collection can reach
other files. Clients never send paths: they address items by id (see ``catalog.py``, which
also uses :meth:`MediaRoot.escapes` to leave such rows out of every search).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from clamp3.inputs import is_supported, kind_of
from clamp3.serve.errors import Forbidden, NotFound, RangeNotSatisfiable

# What the page offers per kind of the input table (clamp3.inputs): a player for audio, a
# rendered score for sheet music, a piano roll + download for MIDI/MTF, the picture for an
# image (indexed by its caption, docs/images.md).
PAGE_KINDS = {
    "recording": "audio",
    "musicxml": "score",
    "abc": "score",
    "midi": "midi",
    "mtf": "midi",
    "text": "text",
    "features": "features",
    "image": "image",
}
# The HTTP content type of each extension of the input table.
CONTENT_TYPES = {
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".xml": "application/vnd.recordare.musicxml+xml",
    ".musicxml": "application/vnd.recordare.musicxml+xml",
    ".mxl": "application/vnd.recordare.musicxml",
    ".abc": "text/vnd.abc; charset=utf-8",
    ".mid": "audio/midi",
    ".midi": "audio/midi",
    ".mtf": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".npy": "application/octet-stream",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
}
RENDERABLE_KINDS = frozenset({"score", "midi"})
CHUNK_SIZE = 64 * 1024
_RANGE = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


def media_kind(path: str) -> str:
    """``audio``, ``score``, ``midi``, ``text``, ``features``, ``image`` or ``other`` (by the input table)."""
    return PAGE_KINDS.get(kind_of(path).name, "other") if is_supported(path) else "other"


def content_type(path: str) -> str:
    return CONTENT_TYPES.get(PurePosixPath(path).suffix.lower(), "application/octet-stream")


class MediaRoot:
    """The folder indexed paths are relative to; resolves them without ever leaving it."""

    def __init__(self, root: str | os.PathLike):
        real = os.path.realpath(root)
        if not os.path.isdir(real):
            raise NotADirectoryError(f"{root}: the media root is not a folder")
        self.root = Path(real)

    def contains(self, path: str | os.PathLike) -> bool:
        """True when ``path``'s real location is the root or below it."""
        real = os.path.realpath(path)
        return os.path.commonpath([real, str(self.root)]) == str(self.root)

    def resolve(self, relative: str) -> Path:
        """An index record's path -> the real path of an existing regular file below the root.

        Raises ``Forbidden`` for paths that are absolute, contain ``..`` or NUL, or whose real
        path (symlinks followed) leaves the root; ``NotFound`` when the file is missing.
        """
        pure = _plain_relative(relative)
        real = os.path.realpath(self.root / pure)
        if os.path.commonpath([real, str(self.root)]) != str(self.root):
            # A symlink inside the collection pointing elsewhere: serving it would expose
            # files the operator never published.
            raise Forbidden("this item's file resolves outside the media root; it is not served")
        if not os.path.isfile(real):
            raise NotFound("this item's file is missing from the media root (moved or deleted?)")
        return Path(real)

    def escapes(self, relative: str, folders: dict[str, bool]) -> bool:
        """True when :meth:`resolve` refuses ``relative`` with ``Forbidden`` (a path that is not
        plain and relative, or whose real path leaves the root); a missing file is no escape.

        ``folders`` caches, across one pass over an index, whether each parent folder's real
        path leaves the root: then only the file itself needs a look (is it a symlink?).
        """
        try:
            pure = _plain_relative(relative)
        except Forbidden:
            return True
        parent = str(pure.parent)
        if parent not in folders:
            folders[parent] = not self.contains(self.root / pure.parent)
        if folders[parent]:
            return True
        candidate = self.root / pure
        return os.path.islink(candidate) and not self.contains(candidate)


def _plain_relative(relative: str) -> PurePosixPath:
    """An index record's path as a relative POSIX path; ``Forbidden`` for NUL, backslashes,
    absolute paths and ``..`` segments."""
    if not relative or "\x00" in relative or "\\" in relative:
        raise Forbidden("this item's file path is not a plain relative path; it is not served")
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts:
        raise Forbidden("this item's file path leaves the media root; it is not served")
    return pure


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``start``..``end`` inclusive of a file of ``size`` bytes."""

    start: int
    end: int
    size: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    @property
    def content_range(self) -> str:
        return f"bytes {self.start}-{self.end}/{self.size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """A ``Range`` header -> the one byte range to send, or ``None`` for the whole file.

    Supports ``bytes=a-b``, ``bytes=a-`` and ``bytes=-n``. Other units and multi-range requests
    are ignored (RFC 9110 lets a server answer them with the full file; media players never send
    them). A malformed or unsatisfiable byte range raises ``RangeNotSatisfiable``.
    """
    if header is None:
        return None
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    if "," in spec:
        return None
    match = _RANGE.match(spec)
    if match is None or match.group(1) == match.group(2) == "":
        raise RangeNotSatisfiable(f"malformed Range header {header[:80]!r}; expected bytes=START-END", size)
    first, last = match.group(1), match.group(2)
    if first == "":  # suffix range: the last n bytes
        count = int(last)
        if count == 0 or size == 0:
            raise RangeNotSatisfiable(
                f"range {header[:80]!r} selects no bytes of this {size}-byte file", size
            )
        return ByteRange(max(0, size - count), size - 1, size)
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if last != "" and int(last) < start:
        raise RangeNotSatisfiable(f"range {header[:80]!r} ends before it starts", size)
    if start >= size:
        raise RangeNotSatisfiable(f"range {header[:80]!r} is outside this {size}-byte file", size)
    return ByteRange(start, end, size)


def iter_bytes(handle: BinaryIO, start: int, length: int) -> Iterator[bytes]:
    """``length`` bytes of an open file from ``start``, in chunks; closes the file at the end."""
    try:
        handle.seek(start)
        remaining = length
        while remaining > 0:
            chunk = handle.read(min(CHUNK_SIZE, remaining))
            if not chunk:  # the file shrank while streaming; stop rather than pad
                break
            remaining -= len(chunk)
            yield chunk
    finally:
        handle.close()

"""Uploaded query files: accepted types, content sniffing, and a private scratch area.

An upload is accepted only when its extension is a score, MIDI, audio or image type the model reads
*and* its first bytes look like that type (a renamed executable or HTML page is refused with
415 before any parser sees it). The bytes go to a fresh ``0700`` folder below a private
temporary directory that is checked, at start-up, to lie outside the media root, and the folder
is deleted as soon as the query vector is computed. Nothing uploaded is ever served. The private
directory itself goes when the app shuts down, or at the latest when the area is garbage
collected or the interpreter exits (an app that was never started or stopped leaves nothing).
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from clamp3.inputs import extensions
from clamp3.serve.errors import TooLarge, UnsupportedType

# Kinds of the input table (clamp3.inputs) a client may upload: music it has at hand. Texts are
# typed into the search box; MERT .npy arrays are a pipeline format, not something to sniff.
# An image (a photo or scan of a score) is searched by its caption.
UPLOAD_KINDS = ("musicxml", "abc", "midi", "mtf", "recording", "image")
UPLOAD_EXTENSIONS = extensions(kinds=UPLOAD_KINDS)
HEAD_BYTES = 64 * 1024  # enough for any XML prolog/DOCTYPE before the root element
_ABC_FIELD = re.compile(r"^(?:[XTMLKQVP]:|\[V:)", re.MULTILINE)
_SCORE_ROOT = re.compile(r"<score-(?:partwise|timewise)[\s>]")


def upload_suffix(filename: str | None) -> str:
    """The lower-case extension of an uploaded file's name, if it is one we accept."""
    # Only the final name component counts; browsers send bare names, others may not.
    name = PurePosixPath((filename or "").replace("\\", "/")).name
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in UPLOAD_EXTENSIONS:
        accepted = ", ".join(sorted(UPLOAD_EXTENSIONS))
        raise UnsupportedType(
            f"file type {suffix or '(no extension)'!r} is not accepted; upload a score, MIDI or audio file, "
            f"or an image ({accepted})"
        )
    return suffix


def _text_head(head: bytes) -> str | None:
    """The head as text (UTF-8, or UTF-16 with a BOM), or ``None`` when it is binary."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return head.decode("utf-16", errors="ignore")
    if b"\x00" in head:
        return None
    try:  # the head may end inside a multi-byte character: decode incrementally
        return codecs.getincrementaldecoder("utf-8")().decode(head, final=False).lstrip("\ufeff")
    except UnicodeDecodeError:
        return None


def sniff(suffix: str, head: bytes) -> None:
    """Raise ``UnsupportedType`` unless ``head`` (the first bytes) matches the ``suffix`` type."""
    if suffix in (".mid", ".midi"):
        ok = head.startswith(b"MThd")
    elif suffix == ".mxl":
        ok = head.startswith(b"PK\x03\x04")  # a zip container
    elif suffix == ".wav":
        ok = head[:4] in (b"RIFF", b"RIFX") and head[8:12] == b"WAVE"
    elif suffix == ".flac":
        ok = head.startswith(b"fLaC")
    elif suffix == ".ogg":
        ok = head.startswith(b"OggS")
    elif suffix == ".png":
        ok = head.startswith(b"\x89PNG\r\n\x1a\n")
    elif suffix in (".jpg", ".jpeg"):
        ok = head.startswith(b"\xff\xd8\xff")
    elif suffix == ".webp":
        ok = head[:4] == b"RIFF" and head[8:12] == b"WEBP"
    elif suffix == ".mp3":
        ok = head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)
    else:
        text = _text_head(head)
        if suffix in (".xml", ".musicxml"):
            ok = text is not None and _SCORE_ROOT.search(text) is not None
        elif suffix == ".mtf":
            ok = text is not None and text.startswith("ticks_per_beat ")
        else:  # .abc
            ok = text is not None and _ABC_FIELD.search(text) is not None
    if not ok:
        raise UnsupportedType(
            f"the file's content does not look like a {suffix} file; check the file or its name"
        )


class UploadArea:
    """A private temporary directory for uploads, outside every folder the service serves."""

    def __init__(self, served_roots: list[Path], parent: str | os.PathLike | None = None):
        self.base = Path(tempfile.mkdtemp(prefix="clamp3-serve-uploads-", dir=parent))  # mode 0700
        real = os.path.realpath(self.base)
        for root in served_roots:
            root_real = os.path.realpath(root)
            if os.path.commonpath([real, root_real]) == root_real:
                shutil.rmtree(self.base, ignore_errors=True)
                raise ValueError(
                    f"the upload directory {self.base} would be inside the served folder {root}; "
                    "set TMPDIR to a folder outside the media root"
                )
        self._remove = weakref.finalize(self, shutil.rmtree, str(self.base), ignore_errors=True)

    @contextlib.contextmanager
    def store(self, source: BinaryIO, suffix: str, limit: int) -> Iterator[tuple[Path, str]]:
        """Copy ``source`` to a private file ending in ``suffix``; yield (path, sha256 hex of
        suffix + content).

        Raises ``TooLarge`` past ``limit`` bytes and ``UnsupportedType`` when the content does
        not match the suffix. The file and its folder are deleted when the block exits.
        """
        # Recreated if gone: temporary-file cleaners may remove an idle folder under /tmp.
        self.base.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(dir=self.base))
        try:
            target = folder / f"upload{suffix}"
            digest, size = hashlib.sha256(suffix.encode() + b"\0"), 0
            head = source.read(HEAD_BYTES)
            if not head:
                raise UnsupportedType("the uploaded file is empty")
            sniff(suffix, head)
            with open(target, "wb") as out:
                chunk = head
                while chunk:
                    size += len(chunk)
                    if size > limit:
                        raise TooLarge(f"the upload is larger than the limit of {limit / 2**20:.0f} MB")
                    digest.update(chunk)
                    out.write(chunk)
                    chunk = source.read(1 << 20)
            yield target, digest.hexdigest()
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        """Delete the private directory (idempotent)."""
        self._remove()

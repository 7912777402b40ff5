"""Text repair at the corpus boundary: metadata strings that music21 read with the wrong code page.

Several of music21's Essen folk-song files (``essenFolksong/lot.abc``, ``han*.abc``, ...) were
written in the DOS code page 437 and are shipped re-encoded byte for byte, so ``ü`` (0x81 in
CP437) arrives as the C1 control character U+0081 and ``ß`` (0xE1) as ``á``: "Ich ging einmal
durch eine gr\\x81ne Wies'" reaches the MusicXML and every text of the piece. Other files of the
same folder (``irl.abc``) are genuine Latin-1 text, where ``á`` is right. The code page is a
property of the file, so it is decided per file: one that holds any C1 control character was
CP437, and every character of its strings in U+0080-U+00FF is mapped back through CP437. Control
characters left over after that (none in the corpus today) and U+FFFD are removed, so no text
of the corpus carries an invisible or replacement character (:func:`find_unclean`).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Any

C1_CONTROLS = re.compile("[\x80-\x9f]")
# Metadata fields that reach titles, texts and the written MusicXML.
METADATA_FIELDS = (
    "title",
    "movementName",
    "alternativeTitle",
    "popularTitle",
    "composer",
    "localeOfComposition",
)


def from_cp437(text: str) -> str:
    """Characters U+0080-U+00FF read back as the CP437 bytes they were (others unchanged)."""
    return "".join(bytes([ord(c)]).decode("cp437") if 0x80 <= ord(c) <= 0xFF else c for c in text)


def strip_unprintable(text: str) -> str:
    """Drop control characters (keeping tab and newline) and U+FFFD."""
    return "".join(c for c in text if c in "\t\n" or (unicodedata.category(c) != "Cc" and c != "\ufffd"))


def repair(text: str, cp437: bool) -> str:
    """``text`` from a file of the given code page, as the characters its author wrote."""
    return strip_unprintable(from_cp437(text) if cp437 else text)


@lru_cache(maxsize=256)
def file_uses_cp437(path: str) -> bool:
    """True when the text file at ``path`` holds C1 control characters (CP437 shipped as is)."""
    try:
        text = Path(path).read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return False
    return C1_CONTROLS.search(text) is not None


def repair_metadata(score: Any) -> list[str]:
    """Repair ``score.metadata`` in place (a music21 Score); returns the fields it changed."""
    md = score.metadata
    if md is None:
        return []
    source = getattr(md, "filePath", None)
    cp437 = bool(source) and file_uses_cp437(str(source))
    changed = []
    for name in METADATA_FIELDS:
        value = getattr(md, name, None)
        if isinstance(value, str) and value and repair(value, cp437) != value:
            setattr(md, name, repair(value, cp437))
            changed.append(name)
    return changed


def find_unclean(value: Any, where: str = "") -> list[str]:
    """Every string inside ``value`` (nested dicts/lists) holding a control character other than
    tab/newline or U+FFFD, as ``'where: text'`` lines; empty when all are clean."""
    if isinstance(value, str):
        return [f"{where}: {value!r}"] if strip_unprintable(value) != value else []
    if isinstance(value, dict):
        return [
            line for k, v in value.items() for line in find_unclean(v, f"{where}.{k}" if where else str(k))
        ]
    if isinstance(value, list | tuple):
        return [line for i, v in enumerate(value) for line in find_unclean(v, f"{where}[{i}]")]
    return []

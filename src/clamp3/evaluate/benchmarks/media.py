"""Finding the music files of a data set, and writing music that a data file holds inline."""

from __future__ import annotations

from pathlib import Path

from clamp3.utils.errors import InputError
from clamp3.utils.io import write_text_atomic
from clamp3.utils.walk import walk_files


def files_by_stem(folder: Path, extensions: frozenset[str] | None = None) -> dict[str, Path]:
    """File name without extension -> file, for every music file below ``folder`` (symbolic
    and audio extensions of the input table by default; hidden entries skipped). Two files
    with one stem (``a.wav`` and ``a.mp3``) are ambiguous: an :class:`InputError` names both."""
    from clamp3 import inputs

    allowed = extensions or frozenset(inputs.extensions("symbolic") + inputs.extensions("audio"))
    listing = walk_files(folder, allowed)  # the one walker: sorted, hidden entries skipped
    if listing.errors:  # a data set read in part would give wrong scores
        raise listing.errors[0]
    found: dict[str, Path] = {}
    for path in listing.files:
        stem = path.name[: -len(path.suffix)]
        if stem in found:
            raise InputError(folder, f"two files for {stem!r}: {found[stem].name} and {path}; keep one")
        found[stem] = path
    return found


def write_inline_scores(texts: dict[str, str], folder: Path, suffix: str) -> dict[str, Path]:
    """Write each key's score text to ``folder/<key><suffix>`` (only when changed, atomically)
    so that the project's file path embeds it; key -> file."""
    out = {}
    for key, text in texts.items():
        path = folder / f"{key}{suffix}"
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            write_text_atomic(path, text)
        out[key] = path
    return out

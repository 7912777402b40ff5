"""The demo's search page: the test pieces of the demo corpus, served with the trained model.

``WORKDIR/search/`` holds what ``clamp3 demo --serve`` serves (reruns reuse it)::

    search/media/<collection>/<title> [<id>]/score.musicxml  performance.mid  recording.wav
    search/embeddings/    clamp3 embed of media/ with the demo model
    search/index/         clamp3 index of those embeddings

The media files are hard links to the corpus's own files (copies where the file system has no
hard links), never symbolic links: the service refuses paths that leave its media root. A
folder per piece, named by collection and title, so a result's path says what it is.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from clamp3.corpus.assemble import FILES, PIECES_DIR, read_splits
from clamp3.utils.errors import InputError

# Corpus file kind -> its name on the page: distinct stems, because embeddings are named by the
# input's path without its extension (the official layout), so score.mid would clash with score.musicxml.
MEDIA_NAMES = {"musicxml": "score.musicxml", "midi": "performance.mid", "wav": "recording.wav"}


def safe_name(text: str, limit: int = 80) -> str:
    """A file-name-safe version of a title: no separators or control characters, trimmed."""
    name = re.sub(r"[\\/:*?\"<>|\x00-\x1f\x7f]+", " ", text)
    name = re.sub(r"\s+", " ", name).strip(" .")
    return name[:limit].rstrip(" .") or "untitled"


def piece_folder(facts: dict) -> str:
    """``<collection name>/<title> [<id>]`` for one piece's facts."""
    return f"{safe_name(facts['collection_name'])}/{safe_name(facts['title'])} [{facts['id']}]"


def _link(src: Path, dst: Path) -> None:
    if dst.exists():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:  # another file system, or none with hard links
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def prepare_media(work: Path, split: str = "test") -> Path:
    """Lay out ``WORKDIR/search/media`` for ``split`` of ``WORKDIR/corpus``; returns the folder.

    Raises :class:`InputError` when the corpus is not built or the split is empty.
    """
    corpus = Path(work) / "corpus"
    splits_file = corpus / "splits.json"
    if not splits_file.is_file():
        raise InputError(corpus, "no built demo corpus here: run `clamp3 demo` first")
    ids = read_splits(corpus).get(split, [])
    if not ids:
        raise InputError(splits_file, f"the corpus has no {split!r} piece")
    media = Path(work) / "search" / "media"
    for piece_id in ids:
        piece = corpus / PIECES_DIR / piece_id
        facts = json.loads((piece / FILES["facts"]).read_text(encoding="utf-8"))
        folder = media / piece_folder(facts)
        for kind, name in MEDIA_NAMES.items():  # rendered, piano-rolled and played by the page
            if (piece / FILES[kind]).is_file():
                _link(piece / FILES[kind], folder / name)
    return media


def search_command(work: Path, model: str, port: int, host: str = "127.0.0.1") -> list[list[str]]:
    """The ``clamp3`` argument lists that embed, index and serve the demo's search folder."""
    search = Path(work) / "search"
    media, emb, index = search / "media", search / "embeddings", search / "index"
    commands = [["embed", str(media), str(emb), "--model", model]]
    if not (index / "meta.json").is_file():
        commands.append(["index", str(emb), str(index)])
    serve = ["serve", str(index), "--media-root", str(media), "--model", model]
    commands.append(serve + ["--host", host, "--port", str(port)])
    return commands

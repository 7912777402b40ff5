"""Choose pieces from music21's bundled corpus: a deterministic, varied, prefix-stable list.

The corpus holds single-piece files (MusicXML, Humdrum) and multi-tune ABC books (the Essen
folk songs, O'Neill's and Ryan's fiddle tunes). A piece is one file, or one ``X:`` tune of an
ABC book. ``data/collections.json`` says which folders are used and in what proportion.

The order is fixed by hashes of piece ids, so ``select_pieces(200)`` is the first 200 of
``select_pieces(400)``: growing a corpus reuses every piece already built.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from clamp3.utils.walk import walk_files

# Pieces whose source file is larger than this take seconds to parse, convert and render
# (Beethoven quartet movements: ~20 s each); leaving them out keeps a build of a few hundred
# pieces to minutes. ABC tunes are small and not limited.
MAX_SOURCE_BYTES = {".mxl": 24_000, ".xml": 250_000, ".musicxml": 250_000, ".krn": 12_000}
SCORE_SUFFIXES = (
    ".mxl",
    ".musicxml",
    ".xml",
    ".krn",
    ".abc",
)  # preference order for one piece in two formats


@dataclass(frozen=True)
class PieceRef:
    """One piece of the music21 corpus.

    ``id`` is safe as a file name and has no dot (the evaluation matches files by the name
    before the first dot). ``source`` is the corpus-relative path; ``number`` the ABC tune
    number (``X:``) inside a multi-tune file, else None. Pieces with the same ``group``
    (variants of one chorale, one tune printed twice) always land in the same split.
    """

    id: str
    source: str
    number: int | None
    collection: str
    group: str
    title_hint: str = ""


@lru_cache(maxsize=1)
def load_collections() -> dict[str, Any]:
    """The parsed ``data/collections.json`` (collections, composer names)."""
    text = (resources.files("clamp3.corpus") / "data" / "collections.json").read_text(encoding="utf-8")
    return json.loads(text)


def corpus_root() -> Path:
    """The folder of music21's core corpus."""
    from music21 import common

    return Path(common.getCorpusFilePath())


def stable_hash(text: str) -> int:
    """A 64-bit hash that is the same on every machine and run (``hash()`` is salted)."""
    return int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest()[:8], "big")


def slug(text: str) -> str:
    """File-name-safe id part: letters, digits, ``_`` and ``-`` only (no dots)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "x"


def _collection_of(rel: str, collections: dict[str, Any]) -> str | None:
    best, best_len = None, -1
    for key, spec in collections.items():
        if any(rel.startswith(ex) for ex in spec.get("exclude", [])):
            continue
        for prefix in spec["match"]:
            if rel.startswith(prefix) and len(prefix) > best_len:
                best, best_len = key, len(prefix)
    return best


def _norm_title(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", title.lower()).strip()


def scan_abc_tunes(path: Path) -> list[tuple[int, str]]:
    """``(X: number, first T: title)`` of every tune in an ABC book, read as text (parsing the
    books with music21 would take minutes).

    Tunes with ``V:`` voices are left out: music21's ABC reader turns each repeated ``V:`` block
    into a new part (a two-voice fife tune becomes twelve parts). A duplicated ``X:`` number
    cannot be addressed by music21, so only its first tune is kept.
    """
    tunes: dict[int, str] = {}
    voiced: set[int] = set()
    current: int | None = None
    for line in path.read_text(encoding="latin-1").splitlines():
        if line.startswith("X:"):
            match = re.match(r"X:\s*(\d+)", line)
            current = int(match.group(1)) if match else None
            if current is not None and current in tunes:
                current = None
            elif current is not None:
                tunes[current] = ""
        elif current is None:
            continue
        elif line.startswith("T:") and not tunes[current]:
            tunes[current] = line[2:].strip()
        elif line.startswith("V:"):
            voiced.add(current)
    return [(number, title) for number, title in tunes.items() if number not in voiced]


def _file_group(collection: str, rel: str) -> str:
    stem = Path(rel).with_suffix("").as_posix()
    if collection == "bach":
        # bwv248.23-2 and bwv248.23-s are two settings of one chorale
        stem = stem.split("-")[0]
    return f"{collection}:{stem}"


def list_candidates(root: Path | None = None) -> list[PieceRef]:
    """Every usable piece of the corpus, in no particular order; a piece stored in two formats
    (``bwv277.krn`` and ``bwv277.mxl``) is listed once, in the first of :data:`SCORE_SUFFIXES`."""
    root = root or corpus_root()
    collections = load_collections()["collections"]
    refs: dict[str, PieceRef] = {}
    listed = walk_files(root, SCORE_SUFFIXES).files
    for path in sorted(listed, key=lambda p: (p.with_suffix("").as_posix(), _rank(p))):
        if path.suffix not in SCORE_SUFFIXES:  # the corpus's own spelling: lower case
            continue
        rel = path.relative_to(root).as_posix()
        collection = _collection_of(rel, collections)
        if collection is None:
            continue
        base = slug(Path(rel).with_suffix("").as_posix().replace("/", "-"))
        if path.suffix == ".abc":
            for number, title in scan_abc_tunes(path):
                group = f"{collection}:{_norm_title(title) or base + str(number)}"
                refs.setdefault(
                    f"{base}-{number}", PieceRef(f"{base}-{number}", rel, number, collection, group, title)
                )
            continue
        if path.stat().st_size <= MAX_SOURCE_BYTES.get(path.suffix, 0):
            refs.setdefault(base, PieceRef(base, rel, None, collection, _file_group(collection, rel)))
    return list(refs.values())


def _rank(path: Path) -> int:
    return SCORE_SUFFIXES.index(path.suffix) if path.suffix in SCORE_SUFFIXES else len(SCORE_SUFFIXES)


def select_pieces(n: int | None = None, root: Path | None = None) -> list[PieceRef]:
    """The first ``n`` pieces (all when None) of the deterministic selection order.

    Within a collection pieces are ordered by a hash of their id; collections are interleaved
    by smooth weighted round-robin on their ``weight``, so any prefix mixes chorales, folk
    songs, fiddle tunes, masses and quartets in the configured proportions.
    """
    collections = load_collections()["collections"]
    queues: dict[str, list[PieceRef]] = {}
    for ref in list_candidates(root):
        queues.setdefault(ref.collection, []).append(ref)
    for refs in queues.values():
        refs.sort(key=lambda r: (stable_hash(r.id), r.id))
    weights = {key: float(collections[key]["weight"]) for key in sorted(queues)}
    credit = dict.fromkeys(weights, 0.0)
    position = dict.fromkeys(weights, 0)
    order: list[PieceRef] = []
    limit = sum(len(q) for q in queues.values()) if n is None else n
    while len(order) < limit and weights:
        total = sum(weights.values())
        for key, weight in weights.items():
            credit[key] += weight
        key = max(weights, key=lambda k: (credit[k], k))
        credit[key] -= total
        order.append(queues[key][position[key]])
        position[key] += 1
        if position[key] == len(queues[key]):
            del weights[key]
            del credit[key]
    return order

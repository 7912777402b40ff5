"""The service state: which index is live, what its items are called, and how to search it.

A :class:`Snapshot` is an immutable pairing of a loaded ``SearchIndex`` with the item ids of
its rows. The :class:`Catalog` holds the live snapshot in one attribute: a request reads it
once and keeps that reference to the end, while ``reload`` builds a complete new snapshot on
the side and swaps it in with a single assignment (under a writer lock, so two admin calls
never interleave). The service never writes the index: ``clamp3 index --append`` extends it
(with that command's checks) and ``reload`` serves the result.

Every load (start and ``reload``) checks that the query model is the model that embedded the
index (:func:`clamp3.model_identity.require_same_model`): a text query encoded by one model
against vectors of another would rank at random. In-flight requests therefore finish on the index they started
with, and no request ever waits for a reload.

Item ids are the first 16 hex digits of SHA-256 of the index key (the relative path without
extension): opaque, free of path characters, and stable across rebuilds and appends.

Rows whose path leaves the media root (a crafted record, or a symlink in the collection that
points elsewhere) are hidden when a snapshot is built: their files are never served, and their
vectors must not rank either, or similarity scores would describe files outside the root.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np

from clamp3.index import SearchIndex
from clamp3.index.filters import FilterError, Where
from clamp3.model_identity import identify, require_same_model
from clamp3.serve.errors import Forbidden, NotFound, Unavailable, Unprocessable
from clamp3.serve.media import MediaRoot, media_kind
from clamp3.utils.errors import InputError
from clamp3.utils.io import read_text
from clamp3.utils.reasons import printable

if TYPE_CHECKING:
    from clamp3.serve.encoder import QueryEncoder

log = logging.getLogger(__name__)

MAX_RESULTS = 1000  # deepest rank a client can page to: a result list, not an export
TEXT_PREVIEW_CHARS = 2000


def item_id(key: str) -> str:
    """The item's id in URLs: 16 hex digits of the key's SHA-256. A key from a file name that
    is not valid UTF-8 holds surrogate escapes (``os.fsdecode``); they hash as the raw bytes."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def _warn_if_missing(entries: list[dict], hidden: frozenset[int], media: MediaRoot) -> None:
    """One warning when indexed files are absent under the media root (a wrong ``--media-root``
    serves an index whose every file is missing; the items still rank, their files 404)."""
    findable = [e for row, e in enumerate(entries) if row not in hidden]
    missing = [e["path"] for e in findable if not os.path.lexists(media.root / e["path"])]
    if missing:
        log.warning(
            "indexed files missing under the media root: is --media-root the folder that was embedded?",
            extra={"fields": {"missing": len(missing), "of": len(findable), "first": printable(missing[0])}},
        )


@dataclass(frozen=True)
class Result:
    """One ranked item: ``score`` is the cosine similarity in [-1, 1]; ``rank`` is 1-based."""

    id: str
    rank: int
    score: float
    modality: str | None
    path: str
    kind: str


@dataclass(frozen=True)
class Page:
    """Ranks ``offset + 1`` .. ``offset + len(results)`` of at most ``total`` results."""

    results: list[Result]
    total: int
    offset: int
    k: int


@dataclass
class Snapshot:
    """A loaded index and the ids of its rows; never mutated once published.

    ``hidden`` rows (paths leaving the media root) have no entry in ``rows`` and are not
    counted in ``modalities``: they are never results, items or "more like this" sources.
    """

    index: SearchIndex
    ids: list[str]
    rows: dict[str, int]
    modalities: dict[str, int]
    hidden: frozenset[int] = frozenset()
    loaded_at: float = field(default_factory=time.time)
    facets: dict[str, Any] | None = None  # computed on first use (a benign race: equal values)

    @classmethod
    def build(cls, index: SearchIndex, media: MediaRoot) -> Snapshot:
        entries = [index.entry(row) for row in range(len(index))]
        folders: dict[str, bool] = {}
        hidden = frozenset(row for row, e in enumerate(entries) if media.escapes(e["path"], folders))
        if hidden:
            log.warning(
                "%d index rows (e.g. %r) whose paths are not plain relative paths (a backslash, '..', "
                "absolute) or whose files resolve outside the media root %s are left out of every search",
                len(hidden),
                entries[min(hidden)]["path"],
                media.root,
                extra={"fields": {"rows_left_out": len(hidden), "media_root": str(media.root)}},
            )
        _warn_if_missing(entries, hidden, media)
        ids = [item_id(e["key"]) for e in entries]
        rows = {i: row for row, i in enumerate(ids) if row not in hidden}
        counts = Counter(e.get("modality") or "unknown" for row, e in enumerate(entries) if row not in hidden)
        return cls(index, ids, rows, dict(counts), hidden)

    @property
    def size(self) -> int:
        """Items that can be found (hidden rows left out)."""
        return len(self.rows)

    def row(self, identifier: str) -> int:
        row = self.rows.get(identifier)
        if row is None:
            raise NotFound(f"no item with id {identifier!r} in the index (it may have been rebuilt)")
        return row

    def condition(self, modality: str | None, where: str | None) -> Where | None:
        """The modality restriction and ``where`` filter as one; a bad filter is a 422."""
        try:
            return self.index.where(where, modality)
        except FilterError as exc:
            raise Unprocessable(f"where: {exc.reason}") from None

    def matching(self, condition: Where | None) -> np.ndarray | None:
        """Rows (ascending int64) passing ``condition``, hidden rows included; None = all."""
        return None if condition is None else self.index.matching_rows(condition)

    def available(self, condition: Where | None) -> int:
        """Findable items passing ``condition`` (hidden rows left out)."""
        rows = self.matching(condition)
        if rows is None:
            return self.size
        return len(rows) - (int(np.isin(rows, list(self.hidden)).sum()) if self.hidden else 0)


class Catalog:
    """Search, item look-up and index maintenance over one index folder and its media root.

    ``encoder`` may be ``None``: then only "more like this" works (no text or file queries).
    """

    def __init__(
        self,
        index_dir: str | os.PathLike,
        media_root: MediaRoot,
        encoder: QueryEncoder | None,
        allow_model_mismatch: bool = False,
    ):
        self.index_dir = Path(index_dir)
        self.media = media_root
        self.encoder = encoder
        self.allow_model_mismatch = allow_model_mismatch
        self._model = identify(encoder.model) if encoder is not None else None
        self._writer = threading.Lock()
        self._snapshot = self._load()

    # ----------------------------------------------------------------------------- state
    @property
    def snapshot(self) -> Snapshot:
        """The live snapshot; read it once per request and use that reference throughout."""
        return self._snapshot

    def _load(self) -> Snapshot:
        index = SearchIndex.load(self.index_dir)
        if self.encoder is not None and index.dim != self.encoder.dim:
            raise InputError(
                self.index_dir, f"holds {index.dim}-d vectors but the model gives {self.encoder.dim}-d"
            )
        if self._model is not None:
            require_same_model(
                (f"the vectors of the index {self.index_dir}", index.identity),
                ("the query model", self._model),
                self.index_dir,
                allow_mismatch=self.allow_model_mismatch,
            )
        return Snapshot.build(index, self.media)

    def reload(self) -> dict[str, Any]:
        """Re-read the index folder (e.g. after ``clamp3 index --append`` or ``index-remove``) and
        swap it in. Counts are of findable items (rows leaving the media root are not counted);
        ``added`` and ``removed`` compare item ids, so a removal and an append between two
        reloads are both told (the net change would hide them)."""
        with self._writer:
            old = self._snapshot
            self._snapshot = new = self._load()
        counts = {
            "items_before": old.size,
            "items": new.size,
            "added": len(new.rows.keys() - old.rows.keys()),
            "removed": len(old.rows.keys() - new.rows.keys()),
        }
        log.info("index reloaded", extra={"fields": counts})
        return counts

    def facets(self) -> dict[str, Any]:
        """The live index's filterable columns and their values (:mod:`clamp3.serve.facets`)."""
        from clamp3.serve.facets import facets

        snap = self._snapshot
        if snap.facets is None:
            snap.facets = facets(snap.index.entries(), snap.index.catalogue_columns, snap.hidden)
        return snap.facets

    def model_label(self) -> str | None:
        """The model's name for clients: the loaded model's config name, else the last part
        of the model id stored in the index (a tag, or a folder whose full path stays private)."""
        if self.encoder is not None:
            return self.encoder.model.config.name
        stored = (self._snapshot.index.model or "").rstrip("/\\")
        return os.path.basename(stored) or None

    def health(self) -> dict[str, Any]:
        snap = self._snapshot
        return {
            "status": "ok",
            "items": snap.size,
            "modalities": snap.modalities,
            "model": self.model_label(),
            "dimension": snap.index.dim,
            "index_kind": snap.index.kind,
            "index_backend": snap.index.backend,
            "loaded_at": snap.loaded_at,
            "text_search": self.encoder is not None,
        }

    # ----------------------------------------------------------------------------- searching
    def _encoder(self) -> QueryEncoder:
        if self.encoder is None:
            raise Unavailable("this server runs without a model; only 'more like this' searches work")
        return self.encoder

    def search_text(
        self, query: str, k: int, offset: int, modality: str | None, where: str | None = None
    ) -> Page:
        text = query.strip()
        # Control, format and separator characters alone (a NUL, a zero-width space) are no query.
        if not any(unicodedata.category(c)[0] not in "CZ" for c in text):
            raise Unprocessable("the query is empty; type a few words")
        self._snapshot.condition(modality, where)  # a bad filter fails before the model runs
        return self.search_vector(self._encoder().text(text), k, offset, modality, where)

    def search_upload(
        self,
        path: Path,
        digest: str,
        name: str,
        k: int,
        offset: int,
        modality: str | None,
        where: str | None = None,
    ) -> Page:
        """Search with an uploaded file at ``path``; ``name`` (the client's) stands for it in
        error messages."""
        self._snapshot.condition(modality, where)
        return self.search_vector(self._encoder().file(path, digest, name), k, offset, modality, where)

    def upload_caption(self, digest: str) -> str | None:
        """The caption an uploaded image was searched as (``None``: not an image, or forgotten)."""
        return None if self.encoder is None else self.encoder.caption(digest)

    def search_recent_upload(
        self, digest: str, k: int, offset: int, modality: str | None, where: str | None = None
    ) -> Page:
        vector = self._encoder().upload(digest)
        if vector is None:
            raise NotFound("this upload is no longer remembered; upload the file again")
        return self.search_vector(vector, k, offset, modality, where)

    def search_vector(
        self, vector: np.ndarray, k: int, offset: int, modality: str | None, where: str | None = None
    ) -> Page:
        """Ranks ``offset + 1`` .. ``offset + k`` for a query vector (D,), best first."""
        return self._rank(self._snapshot, vector, k, offset, modality, where=where)

    @staticmethod
    def _rank(
        snap: Snapshot,
        vector: np.ndarray,
        k: int,
        offset: int,
        modality: str | None,
        exclude: int | None = None,
        where: str | None = None,
    ) -> Page:
        """``search_vector`` on one snapshot; ``exclude`` drops one row (the item a "more like
        this" query came from); ``where`` filters on metadata (:mod:`clamp3.index.filters`)."""
        condition = snap.condition(modality, where)
        rows = snap.matching(condition)
        excluded = exclude is not None and (rows is None or bool(np.isin(exclude, rows)))
        total = min(snap.available(condition) - excluded, MAX_RESULTS)
        wanted = min(offset + k, total)
        if wanted <= offset:
            return Page([], max(total, 0), offset, k)
        # Hidden rows may rank anywhere: fetch enough to fill the page without them.
        fetch = wanted + excluded + len(snap.hidden)
        hits = snap.index.search(vector[None, :], fetch, where=condition)[0]
        hits = [h for h in hits if h.row != exclude and h.row not in snap.hidden][:wanted]
        results = [
            Result(snap.ids[h.row], rank, h.score, h.modality, printable(h.path), media_kind(h.path))
            for rank, h in enumerate(hits[offset:], start=offset + 1)
        ]
        return Page(results, total, offset, k)

    def similar(
        self, identifier: str, k: int, offset: int, modality: str | None, where: str | None = None
    ) -> Page:
        """Items nearest to an indexed item (the item itself left out)."""
        snap = self._snapshot
        row = snap.row(identifier)
        vector = self._stored_vector(snap, row)
        return self._rank(snap, vector, k, offset, modality, exclude=row, where=where)

    def _stored_vector(self, snap: Snapshot, row: int) -> np.ndarray:
        # Every index kind keeps its vectors (IVF through a direct map), so no re-embedding.
        return snap.index.vector(row)

    # ----------------------------------------------------------------------------- items
    def item(self, identifier: str) -> dict[str, Any]:
        """Metadata of one item; text items carry the start of their text."""
        snap = self._snapshot
        row = snap.row(identifier)
        entry = snap.index.entry(row)
        info: dict[str, Any] = {
            "id": identifier,
            "key": printable(entry["key"]),
            "path": printable(entry["path"]),
            "name": printable(PurePosixPath(entry["path"]).name),
            "modality": entry.get("modality"),
            "kind": media_kind(entry["path"]),
            "size_bytes": None,
            "text": None,
            "metadata": {name: entry.get(name) for name in snap.index.catalogue_columns},
        }
        try:
            path = self.media.resolve(entry["path"])
            info["size_bytes"] = path.stat().st_size
            if info["kind"] == "text":  # decoded as it was embedded: a mark dropped, UTF-16 read
                info["text"] = read_text(path)[:TEXT_PREVIEW_CHARS]
        except (NotFound, Forbidden, OSError, InputError) as exc:  # described, never served
            # the reason without the file's path on this server (the client knows the item's path)
            reason = exc.reason if isinstance(exc, InputError) else getattr(exc, "strerror", None)
            info["available"], info["problem"] = False, printable(reason or str(exc))
            return info
        info["available"], info["problem"] = True, None
        return info

    def media_path(self, identifier: str) -> Path:
        """The real path of an item's file (checked to lie under the media root)."""
        snap = self._snapshot
        return self.media.resolve(snap.index.entry(snap.row(identifier))["path"])

"""``SearchIndex``: cosine search over unit vectors plus a metadata table, on one of two back-ends.

The interface (this class) is shared; where the vectors live is the back-end's business:

* ``faiss`` (default, embedded): :class:`clamp3.index.backends.faiss.FaissIndex`, the index
  folder holds the FAISS file and the row table (``ids.jsonl``);
* ``milvus``: :class:`clamp3.index.backends.milvus.MilvusIndex`, a Milvus collection (a
  Milvus Lite file or a Standalone / Distributed server) holds vectors and metadata; the index
  folder holds only ``meta.json`` saying where it is.

``meta.json`` (both back-ends): format, backend, model (absolute path or tag),
model_fingerprint, input_root, dimension, metric ("cosine"), kind, params (efSearch/nprobe),
calibration, columns (catalogue column -> type), count, created, updated, withdrawn (items
index-remove took out, key -> path; absent when none); Milvus adds uri,
collection, token_env, index_type.

Every row has a metadata record: ``key`` (identity: relative path without extension),
``path``, ``modality``, ``npy``, ``n_items``, ``sha256``, ``model`` and the catalogue columns.
``search(..., where=...)`` filters on them with the grammar of :mod:`clamp3.index.filters`.
The plan is chosen here, for both back-ends: a filter keeping at most ``exact_subset_rows``
rows (counted on the metadata table) is answered by scoring exactly those rows' stored vectors
(:mod:`clamp3.index.subset`); a wider one by the back-end's own filtered search.

Result order: best score first, and hits with equal scores by key, so duplicate files come
back in the same order on every run, index kind and back-end.

Thread safety: ``search`` calls may run concurrently; ``add``, ``upsert``, ``remove`` and
``reload`` take an exclusive lock.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import numbers
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clamp3.index.filters import Where, parse_where, with_modality
from clamp3.index.locking import ReadWriteLock
from clamp3.index.records import BACKENDS, BASE_COLUMNS, META_FILE, entry_of, now, read_meta
from clamp3.index.subset import EXACT_SUBSET_ROWS, SubsetVectors, exact_subset_nearest
from clamp3.model_identity import ModelIdentity
from clamp3.utils.errors import InputError
from clamp3.utils.vectors import l2_normalize

log = logging.getLogger(__name__)

MAX_CACHED_FILTERS = 64  # row sets kept per index (one int64 per matching row each)
TIE_MARGIN = 8  # extra rows fetched so hits tied with the k-th can be ordered by key before the cut


def _cosine(score: float) -> float:
    """A back-end's score held to [-1, 1] (float rounding of unit vectors can pass 1)."""
    return min(1.0, max(-1.0, float(score)))


@dataclass(frozen=True)
class Hit:
    """One search result: ``score`` is the cosine similarity in [-1, 1]; ``row`` the index row."""

    path: str
    modality: str | None
    score: float
    row: int
    key: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def remember(cache: dict, key: str, value: Any) -> None:
    """``cache[key] = value``, dropping the oldest entry beyond ``MAX_CACHED_FILTERS`` (clients
    choose the expressions, so the cache must stay bounded). Readers may race here: they build
    equal values, and an eviction that loses a race is simply skipped."""
    if len(cache) >= MAX_CACHED_FILTERS:
        with contextlib.suppress(RuntimeError, StopIteration):  # another thread changed the dict meanwhile
            cache.pop(next(iter(cache)), None)
    cache[key] = value


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows of (N, D) (or one (D,)) scaled to unit L2 norm -> float32 (N, D), C-contiguous
    (:func:`clamp3.utils.vectors.l2_normalize`). All-zero rows stay zero."""
    return l2_normalize(np.atleast_2d(vectors))


# The back-end classes by name, found when first used: they subclass SearchIndex, so this module
# names them instead of importing them (and a back-end's dependencies load only when it is used).
BACKEND_CLASSES = {
    "faiss": "clamp3.index.backends.faiss:FaissIndex",
    "milvus": "clamp3.index.backends.milvus:MilvusIndex",
}


def backend_class(name: str) -> Any:
    module, _, attribute = BACKEND_CLASSES[name].partition(":")
    return getattr(importlib.import_module(module), attribute)


class SearchIndex:
    """Cosine search over embeddings with a metadata table, extendable in place. Build with
    :meth:`create` + :meth:`add` (or :func:`clamp3.index.build_index` from a folder), or open
    with :meth:`load`; both pick the back-end class."""

    backend = "?"

    def __init__(self, entries: list[dict[str, Any]], meta: dict[str, Any]):
        self._entries = entries
        self._meta = meta
        self._rows_by_key = {e["key"]: i for i, e in enumerate(entries)}
        self._matching: dict[str, np.ndarray] = {}
        self._subsets = SubsetVectors()
        self._lock = ReadWriteLock()
        self.directory: Path | None = None

    # ----------------------------------------------------------------------------- creating
    @classmethod
    def create(cls, dim: int, kind: str = "flat", *, backend: str = "faiss", **options: Any) -> SearchIndex:
        """An empty index of ``kind`` (``flat``, ``hnsw``, ``ivf``) for ``dim``-d vectors.

        ``options`` (all optional): ``identity`` (the embedding model, a
        :class:`clamp3.model_identity.ModelIdentity`; or ``model`` / ``model_fingerprint``) and
        ``input_root`` record where the vectors came from; ``columns`` (catalogue column -> type),
        ``target_recall`` (recall@10 the approximate kinds are calibrated to), ``train_vectors``
        (FAISS ``ivf``: the vectors its lists are learnt from). Milvus: ``uri`` (a Lite file or
        ``http://host:19530``), ``collection``, ``token_env``, ``index_type``, ``overwrite``.
        """
        if backend not in BACKEND_CLASSES:
            raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
        return backend_class(backend).create(dim, kind, **options)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> SearchIndex:
        """Open the index folder ``directory`` on the back-end its ``meta.json`` names."""
        root = Path(directory)
        meta = read_meta(root)
        backend = meta.get("backend", "faiss")
        if backend not in BACKEND_CLASSES:
            raise InputError(root / META_FILE, f"unknown backend {backend!r}")
        out = backend_class(backend).open(root, meta)
        out.directory = root
        return out

    def reload(self) -> None:
        """Re-read this index from its directory (e.g. after another process extended it)."""
        if self.directory is None:
            raise ValueError("this index was never saved or loaded, so there is nothing to reload")
        fresh = SearchIndex.load(self.directory)
        with self._lock.write():
            self.__dict__.update({k: v for k, v in fresh.__dict__.items() if k != "_lock"})

    def save(self, directory: str | os.PathLike | None = None) -> Path:
        raise NotImplementedError

    # ----------------------------------------------------------------------------- properties
    @property
    def dim(self) -> int:
        return int(self._meta["dimension"])

    @property
    def kind(self) -> str:
        return str(self._meta["kind"])

    @property
    def model(self) -> str | None:
        """The embedding model's absolute path or tag (loadable from any folder), if recorded."""
        return self._meta.get("model")

    @property
    def model_fingerprint(self) -> str | None:
        return self._meta.get("model_fingerprint")

    @property
    def identity(self) -> ModelIdentity | None:
        """The embedding model recorded in ``meta.json`` (``None`` when it names none)."""
        return ModelIdentity.from_fields(self.model, self.model_fingerprint)

    @property
    def meta(self) -> dict[str, Any]:
        """A copy of ``meta.json``'s content."""
        return dict(self._meta)

    @property
    def columns(self) -> dict[str, str]:
        """Every filterable column -> its type: the base metadata, then the catalogue's."""
        return {**BASE_COLUMNS, **self._meta.get("columns", {})}

    @property
    def catalogue_columns(self) -> dict[str, str]:
        return dict(self._meta.get("columns", {}))

    def record_catalogue(self, source: str | os.PathLike) -> None:
        """Remember the catalogue file the rows were joined with (``--sync`` / ``--append`` reuse it)."""
        self._meta["catalogue"] = str(source)

    @property
    def pending_removal(self) -> set[str]:
        """Keys a removal that was cut short still has to delete (hidden from every search,
        deleted by the next :meth:`save`); always empty on FAISS, whose save is atomic."""
        return set(self._meta.get("removing", ()))

    @property
    def withdrawn(self) -> dict[str, str]:
        """Items taken out with ``clamp3 index-remove`` (key -> their path when removed):
        :func:`clamp3.index.build_index` leaves them out of ``--append`` and ``--sync`` (their
        embeddings still lie in the folder). ``add`` does not consult it. Set it to change the
        list (saved with the index; :mod:`clamp3.index.removal` withdraws and readmits)."""
        return dict(self._meta.get("withdrawn", {}))

    @withdrawn.setter
    def withdrawn(self, items: Mapping[str, str]) -> None:
        self._meta.pop("withdrawn", None)
        if items:
            self._meta["withdrawn"] = dict(sorted(items.items()))

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._rows_by_key

    def entry(self, row: int) -> dict[str, Any]:
        """The metadata record of ``row`` (key, path, modality, npy, n_items, sha256, model, ...)."""
        return dict(self._entries[row])

    def entries(self) -> list[dict[str, Any]]:
        """Copies of every row's metadata record, in row order."""
        with self._lock.read():
            return [dict(e) for e in self._entries]

    def row_of(self, key: str) -> int:
        """The row holding ``key``; ``KeyError`` when it is not indexed."""
        return self._rows_by_key[key]

    def vector(self, row: int) -> np.ndarray:
        """The stored unit vector of ``row``, float32 (D,) (e.g. for "more like this" queries)."""
        raise NotImplementedError

    def stored_vectors(self, rows: Sequence[int]) -> np.ndarray:
        """The stored unit vectors of ``rows``, float32 (len(rows), D), in that order."""
        with self._lock.read():
            return self._vectors_of(rows)

    def _vectors_of(self, rows: Sequence[int]) -> np.ndarray:
        """Back-end: :meth:`stored_vectors` (the caller holds the lock)."""
        raise NotImplementedError

    # ----------------------------------------------------------------------------- extending
    def _checked(
        self, vectors: np.ndarray, records: Sequence[Mapping[str, Any]], skip_known: bool
    ) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Unit vectors (M, D) and stored rows of the records to write: repeats in the batch
        (and, with ``skip_known``, keys already indexed) left out; zero or non-finite vectors
        raise ``InputError`` naming the path before anything is written."""
        array = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if len(array) != len(records):
            raise ValueError(f"{len(array)} vectors but {len(records)} records")
        if len(array) and array.shape[1] != self.dim:
            raise InputError(
                records[0].get("path", records[0]["key"]), f"dimension {array.shape[1]} != index's {self.dim}"
            )
        keep, seen = [], set()
        for i, record in enumerate(records):
            key = str(record["key"])
            if key in seen or (skip_known and key in self._rows_by_key):
                continue
            norm = float(np.linalg.norm(array[i]))
            if not np.isfinite(norm) or norm == 0.0:
                raise InputError(record.get("path", key), "zero or non-finite vector cannot be indexed")
            seen.add(key)
            keep.append(i)
        rows = [entry_of(records[i], self.catalogue_columns) for i in keep]
        return normalize(array[keep]) if keep else array[:0], rows

    def add(
        self, vectors: np.ndarray, records: Sequence[Mapping[str, Any]], *, progress: bool = False
    ) -> int:
        """Append vectors (N, D) (any norm; normalised here) with one metadata record each;
        returns how many rows were added.

        A record needs ``key`` and may carry ``path`` (default: the key), ``modality``, ``npy``,
        ``n_items``, ``sha256``, ``model`` and catalogue columns. Keys already in the index, and
        repeats inside the batch, are skipped, so re-adding a folder is a no-op.
        """
        with self._lock.write():
            unit, rows = self._checked(vectors, records, skip_known=True)
            if rows:
                self._write(unit, rows, progress)
                self._changed()
            return len(rows)

    def upsert(
        self, vectors: np.ndarray, records: Sequence[Mapping[str, Any]], *, progress: bool = False
    ) -> int:
        """Insert or replace (by key) vectors (N, D) with their records; returns rows written."""
        with self._lock.write():
            unit, rows = self._checked(vectors, records, skip_known=False)
            known = [r["key"] for r in rows if r["key"] in self._rows_by_key]
            if known:
                self._delete(known, replacing=True)
            if rows:
                self._write(unit, rows, progress)
            self._changed()
            return len(rows)

    def remove(self, keys: Sequence[str]) -> int:
        """Delete the rows of ``keys`` (unknown keys ignored); returns how many were removed."""
        with self._lock.write():
            known = sorted({k for k in keys if k in self._rows_by_key})
            if known:
                self._delete(known)
                self._changed()
            return len(known)

    def _write(self, unit: np.ndarray, rows: list[dict[str, Any]], progress: bool) -> None:
        """Back-end: store new rows (their keys are not indexed at this point)."""
        raise NotImplementedError

    def _delete(self, keys: list[str], replacing: bool = False) -> None:
        """Back-end: drop the rows of ``keys`` (all indexed); ``replacing``: new rows of the same
        keys are written next (a back-end that upserts in place may skip the delete)."""
        raise NotImplementedError

    def _changed(self) -> None:
        self._rows_by_key = {e["key"]: i for i, e in enumerate(self._entries)}
        self._matching = {}
        self._subsets.clear()
        self._meta["count"] = len(self._entries)
        self._meta["updated"] = now()

    # ----------------------------------------------------------------------------- filtering
    def where(self, where: str | Where | None, modality: str | None = None) -> Where | None:
        """``where`` (text or parsed) and a modality restriction as one checked filter; raises
        ``FilterError`` for a bad expression."""
        parsed = parse_where(where, self.columns) if isinstance(where, str) else where
        return parsed if modality is None else with_modality(parsed, modality)

    def matching_rows(self, where: Where) -> np.ndarray:
        """Rows (int64, ascending) whose metadata passes ``where``; cached per expression."""
        rows = self._matching.get(where.text)
        if rows is None:
            rows = np.array([i for i, e in enumerate(self._entries) if where.matches(e)], np.int64)
            remember(self._matching, where.text, rows)
        return rows

    # ----------------------------------------------------------------------------- searching
    def search(
        self, vectors: np.ndarray, k: int = 10, modality: str | None = None, where: str | Where | None = None
    ) -> list[list[Hit]]:
        """The ``k`` most cosine-similar rows for each query of ``vectors`` (Q, D) (or (D,)).

        Queries are normalised here. ``modality`` keeps only rows of that modality, ``where``
        only rows passing a filter (:mod:`clamp3.index.filters`). Returns one list per query,
        best first, equal scores ordered by key; shorter than ``k`` when fewer rows qualify.
        Raises ``ValueError`` for a zero or non-finite query (as :meth:`add` refuses such rows).
        """
        raw = np.atleast_2d(np.asarray(vectors))
        if not (np.isfinite(raw).all() and raw.any(axis=-1).all()):
            raise ValueError("a zero or non-finite query vector cannot be searched")
        queries = normalize(raw)
        if queries.shape[1] != self.dim:
            raise ValueError(f"query dimension {queries.shape[1]} != index dimension {self.dim}")
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        k = int(k)
        condition = self.where(where, modality)
        with self._lock.read():
            total = len(self._entries) if condition is None else len(self.matching_rows(condition))
            if total == 0:
                return [[] for _ in range(len(queries))]
            scores, rows = self._search_past_ties(queries, k, condition, total)
            return [self._ranked(score_row, row_row, k) for score_row, row_row in zip(scores, rows)]

    def _search_past_ties(
        self, queries: np.ndarray, k: int, condition: Where | None, total: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Results deep enough that every row tied with a query's k-th score is among them:
        ``k + TIE_MARGIN`` rows, doubled while the last fetched score still equals the k-th."""
        fetch = min(k + TIE_MARGIN, total, self.max_fetch)
        while True:
            scores, rows = self._planned_nearest(queries, fetch, condition, total)
            if fetch >= min(total, self.max_fetch):
                return scores, rows
            full = rows[:, -1] >= 0  # a filtered search may run out of rows before ``fetch``
            if not (full & (scores[:, -1] == scores[:, min(k, fetch) - 1])).any():
                return scores, rows
            fetch = min(fetch * 2, total, self.max_fetch)

    max_fetch = 1 << 30  # the deepest result list one back-end call may return
    exact_subset_rows = EXACT_SUBSET_ROWS  # filters keeping at most this many rows are scored exactly

    def _planned_nearest(
        self, queries: np.ndarray, fetch: int, condition: Where | None, total: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_nearest`, or for a filter that keeps few rows (``total`` <=
        ``exact_subset_rows``) an exact score of just those rows, from their stored vectors
        (fetched once per filter, :class:`clamp3.index.subset.SubsetVectors`)."""
        if condition is None or total > self.exact_subset_rows:
            return self._nearest(queries, fetch, condition, total)
        rows = self.matching_rows(condition)
        try:
            vectors = self._subsets.get(condition.text, lambda: self._vectors_of(rows))
        except KeyError as exc:  # Milvus: another process removed rows; its engine still answers
            log.warning("exact filtered search unavailable (%s); using the engine's", exc)
            return self._nearest(queries, fetch, condition, total)
        return exact_subset_nearest(queries, vectors, rows, fetch)

    def _nearest(
        self, queries: np.ndarray, fetch: int, condition: Where | None, total: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Back-end: (scores float32 (Q, fetch), rows int64 (Q, fetch), -1 past the end) of the
        ``fetch`` best rows passing ``condition`` (``total`` rows do)."""
        raise NotImplementedError

    def _ranked(self, scores: np.ndarray, rows: np.ndarray, k: int) -> list[Hit]:
        entries = self._entries
        hits = [
            Hit(entries[r]["path"], entries[r].get("modality"), _cosine(s), int(r), entries[r]["key"])
            for s, r in zip(scores, rows)
            if r >= 0
        ]
        hits.sort(key=lambda hit: (-hit.score, hit.key))
        return hits[:k]

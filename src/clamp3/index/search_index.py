"""``SearchIndex``: a FAISS index of unit vectors plus the row -> file mapping, on disk and in memory.

On-disk layout (``INDEX_DIR``)::

    index.faiss   the FAISS index (kind in meta.json), vectors L2-normalised, inner product
    ids.jsonl     one object per row, in row order: row, key, path, modality, npy
    meta.json     format, model (absolute path or tag), model_fingerprint, input_root,
                  dimension, metric ("cosine"), kind, params (efSearch/nprobe), calibration,
                  count, created, updated

Each file is replaced atomically. ``save`` writes ``ids.jsonl`` first, then ``index.faiss``,
then ``meta.json``; rows are only ever appended, so if a save is interrupted ``ids.jsonl`` can
only be *longer* than the index, and ``load`` drops the rows the index does not hold (a rerun
of the append adds them again). The index is the truth for the row count.

Result order: best score first, and hits with equal scores by key, so duplicate files come
back in the same order on every run and index kind (FAISS's own order of ties follows its heap).

Thread safety: ``search`` calls may run concurrently (FAISS CPU searches are read-only and
every call passes its own search parameters); ``add`` and ``reload`` take an exclusive lock.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from clamp3.index import kinds
from clamp3.index.locking import ReadWriteLock
from clamp3.model_identity import ModelIdentity
from clamp3.utils.errors import InputError
from clamp3.utils.io import atomic_path, json_text, read_jsonl, write_json_atomic
from clamp3.utils.vectors import l2_normalize

log = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
IDS_FILE = "ids.jsonl"
META_FILE = "meta.json"
FORMAT_VERSION = 1
ADD_CHUNK = 8192  # rows per FAISS add call: keeps the progress bar moving on HNSW builds
RECALIBRATE_GROWTH = 0.1  # recalibrate an approximate index once it grew 10% since the last time
TIE_MARGIN = 8  # extra rows fetched so hits tied with the k-th can be ordered by key before the cut


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


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows of (N, D) (or one (D,)) scaled to unit L2 norm -> float32 (N, D), C-contiguous
    (:func:`clamp3.utils.vectors.l2_normalize`). All-zero rows stay zero."""
    return l2_normalize(np.atleast_2d(vectors))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class SearchIndex:
    """Cosine search over embeddings, extendable in place. Build with :meth:`create` + :meth:`add`
    (or :func:`clamp3.index.build_index` from a folder), or open with :meth:`load`."""

    def __init__(self, index: Any, entries: list[dict[str, Any]], meta: dict[str, Any]):
        self._index = index
        self._entries = entries
        self._meta = meta
        self._rows_by_key = {e["key"]: i for i, e in enumerate(entries)}
        self._selectors: dict[str, tuple[Any, float]] = {}
        self._lock = ReadWriteLock()
        self.directory: Path | None = None

    # ----------------------------------------------------------------------------- creating
    @classmethod
    def create(
        cls,
        dim: int,
        kind: str = "flat",
        *,
        identity: ModelIdentity | None = None,
        input_root: str | None = None,
        train_vectors: np.ndarray | None = None,
        target_recall: float = 0.95,
    ) -> SearchIndex:
        """An empty index of ``kind`` (``flat``, ``hnsw``, ``ivf``) for ``dim``-d vectors.

        ``identity`` (the embedding model; see :mod:`clamp3.model_identity`) and ``input_root``
        record where the vectors came from (stored as ``model`` / ``model_fingerprint``).

        ``ivf`` learns its lists from ``train_vectors`` (N, dim) (normalised here); pass the
        vectors you are about to add. ``target_recall`` is the recall@10 the approximate kinds
        are calibrated to reach (see :func:`clamp3.index.kinds.calibrate`).
        """
        train = normalize(train_vectors) if train_vectors is not None else None
        index = kinds.new_index(kind, dim, train)
        meta = {
            "format": FORMAT_VERSION,
            "model": identity.id if identity else None,
            "model_fingerprint": identity.fingerprint if identity else None,
            "input_root": input_root,
            "dimension": int(dim),
            "metric": "cosine",
            "kind": kind,
            "params": {},
            "calibration": {"target_recall@10": target_recall, "recall@10": 1.0, "count": 0},
            "count": 0,
            "created": _now(),
            "updated": _now(),
        }
        return cls(index, [], meta)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> SearchIndex:
        """Open ``directory`` (layout in the module docstring); errors name the file at fault."""
        faiss = kinds.import_faiss()
        root = Path(directory)
        for name in (INDEX_FILE, IDS_FILE, META_FILE):
            if not (root / name).is_file():
                raise InputError(root / name, "missing: not an index folder (build it with `clamp3 index`)")
        try:
            meta = json.loads((root / META_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(root / META_FILE, f"unreadable ({exc})") from exc
        try:
            index = faiss.read_index(str(root / INDEX_FILE))
        except RuntimeError as exc:
            raise InputError(root / INDEX_FILE, f"unreadable FAISS index ({exc})") from exc
        if index.d != meta.get("dimension"):
            raise InputError(root / META_FILE, f"dimension {meta.get('dimension')} != index's {index.d}")
        if meta.get("kind") == "hnsw":
            index.hnsw.efConstruction = kinds.HNSW_EF_CONSTRUCTION  # not stored by FAISS
        entries = [{k: v for k, v in e.items() if k != "row"} for e in read_jsonl(root / IDS_FILE)]
        if len(entries) < index.ntotal:
            raise InputError(
                root / IDS_FILE, f"{len(entries)} rows for {index.ntotal} vectors; rebuild the index"
            )
        if len(entries) > index.ntotal:
            log.warning(
                "%s: dropping %d rows of an interrupted append", root / IDS_FILE, len(entries) - index.ntotal
            )
            entries = entries[: index.ntotal]
        meta["count"] = int(index.ntotal)
        out = cls(index, entries, meta)
        out.directory = root
        return out

    def reload(self) -> None:
        """Re-read this index from its directory (e.g. after another process extended it)."""
        if self.directory is None:
            raise ValueError("this index was never saved or loaded, so there is nothing to reload")
        fresh = SearchIndex.load(self.directory)
        with self._lock.write():
            self._index, self._entries, self._meta = fresh._index, fresh._entries, fresh._meta
            self._rows_by_key = fresh._rows_by_key
            self._selectors = {}

    def save(self, directory: str | os.PathLike | None = None) -> Path:
        """Write the three files to ``directory`` (default: where it was loaded/saved last)."""
        faiss = kinds.import_faiss()
        target = Path(directory) if directory is not None else self.directory
        if target is None:
            raise ValueError("save() needs a directory for an index that was never saved")
        target.mkdir(parents=True, exist_ok=True)
        with self._lock.read():
            lines = [json_text({"row": i, **e}) for i, e in enumerate(self._entries)]
            with atomic_path(target / IDS_FILE) as tmp:
                tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
            with atomic_path(target / INDEX_FILE) as tmp:
                faiss.write_index(self._index, str(tmp))
            write_json_atomic(target / META_FILE, self._meta)
        self.directory = target
        return target

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

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._rows_by_key

    def entry(self, row: int) -> dict[str, Any]:
        """The ``ids.jsonl`` record of ``row`` (key, path, modality, npy)."""
        return dict(self._entries[row])

    def row_of(self, key: str) -> int:
        """The row holding ``key``; ``KeyError`` when it is not indexed."""
        return self._rows_by_key[key]

    def vector(self, row: int) -> np.ndarray:
        """The stored unit vector of ``row``, float32 (D,) (e.g. for "more like this" queries).

        Every kind can give it back: flat and HNSW store the vectors, IVF keeps a direct map.
        """
        with self._lock.read():
            if not 0 <= row < len(self._entries):
                raise IndexError(f"row {row} out of range for an index of {len(self._entries)} rows")
            return self._index.reconstruct(int(row))

    # ----------------------------------------------------------------------------- extending
    def add(
        self,
        vectors: np.ndarray,
        records: Sequence[Mapping[str, Any]],
        *,
        progress: bool = False,
    ) -> int:
        """Append vectors (N, D) (any norm; normalised here) with one record each; returns how
        many rows were added.

        A record needs ``key`` (the identity: relative path without extension) and may carry
        ``path`` (default: the key), ``modality`` and ``npy``. Keys already in the index, and
        repeats inside the batch, are skipped, so re-adding a folder is a no-op. An all-zero or
        non-finite vector raises ``InputError`` naming its path before anything is added.
        """
        array = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if len(array) != len(records):
            raise ValueError(f"{len(array)} vectors but {len(records)} records")
        if len(array) and array.shape[1] != self.dim:
            raise InputError(
                records[0].get("path", records[0]["key"]), f"dimension {array.shape[1]} != index's {self.dim}"
            )
        with self._lock.write():
            keep, seen = [], set()
            for i, record in enumerate(records):
                key = str(record["key"])
                if key in self._rows_by_key or key in seen:
                    continue
                norm = float(np.linalg.norm(array[i]))
                if not np.isfinite(norm) or norm == 0.0:
                    raise InputError(record.get("path", key), "zero or non-finite vector cannot be indexed")
                seen.add(key)
                keep.append(i)
            if not keep:
                return 0
            self._add_rows(normalize(array[keep]), [records[i] for i in keep], progress)
            self._maybe_recalibrate()
        return len(keep)

    def _add_rows(self, unit: np.ndarray, records: list[Mapping[str, Any]], progress: bool) -> None:
        from tqdm.auto import tqdm

        with tqdm(
            total=len(unit), desc=f"adding to {self.kind} index", unit="vec", disable=not progress
        ) as bar:
            for start in range(0, len(unit), ADD_CHUNK):
                self._index.add(unit[start : start + ADD_CHUNK])
                bar.update(min(ADD_CHUNK, len(unit) - start))
        for record in records:
            key = str(record["key"])
            self._rows_by_key[key] = len(self._entries)
            self._entries.append(
                {
                    "key": key,
                    "path": str(record.get("path") or key),
                    "modality": record.get("modality"),
                    "npy": record.get("npy"),
                }
            )
        self._selectors = {}
        self._meta["count"] = len(self._entries)
        self._meta["updated"] = _now()

    def _maybe_recalibrate(self) -> None:
        """Re-tune efSearch/nprobe when the collection grew enough to change the recall."""
        if self.kind == "flat":
            return
        calibration = self._meta["calibration"]
        last = int(calibration.get("count", 0))
        if last and len(self) < last * (1 + RECALIBRATE_GROWTH):
            return
        vectors = self._index.reconstruct_n(0, self._index.ntotal)
        knob, recall = kinds.calibrate(
            self.kind, self._index, vectors, target=calibration["target_recall@10"]
        )
        name = "efSearch" if self.kind == "hnsw" else "nprobe"
        self._meta["params"] = {name: knob} if knob is not None else {}
        calibration.update({"recall@10": round(recall, 4), "count": len(self)})
        log.info(
            "calibrated %s index of %d rows: %s=%s (recall@10 %.3f)", self.kind, len(self), name, knob, recall
        )
        if recall < calibration["target_recall@10"]:
            log.warning(
                "%s index: recall@10 %.3f stays below the target at %s=%s", self.kind, recall, name, knob
            )
        if knob is not None and knob >= kinds.knob_limit(self.kind, self._index):
            # Typical of spread-out data (e.g. uniform random vectors): no cluster structure to exploit.
            log.warning(
                "%s index needs %s=%s for its recall target: no faster than exact search here",
                self.kind,
                name,
                knob,
            )

    # ----------------------------------------------------------------------------- searching
    def _selector(self, modality: str) -> tuple[Any, float]:
        cached = self._selectors.get(modality)
        if cached is None:
            rows = np.array(
                [i for i, e in enumerate(self._entries) if e.get("modality") == modality], np.int64
            )
            selector = kinds.import_faiss().IDSelectorBatch(rows) if len(rows) else None
            cached = (selector, len(rows) / max(len(self._entries), 1))
            self._selectors[modality] = cached  # a benign race: concurrent readers build equal values
        return cached

    def search(self, vectors: np.ndarray, k: int = 10, modality: str | None = None) -> list[list[Hit]]:
        """The ``k`` most cosine-similar rows for each query of ``vectors`` (Q, D) (or (D,)).

        Queries are normalised here. ``modality`` keeps only rows of that modality. Returns one
        list per query, best first, hits with equal scores ordered by key; shorter than ``k``
        when fewer rows qualify.
        """
        queries = normalize(vectors)
        if queries.shape[1] != self.dim:
            raise ValueError(f"query dimension {queries.shape[1]} != index dimension {self.dim}")
        if k < 1:
            raise ValueError("k must be >= 1")
        with self._lock.read():
            selector, fraction = (None, 1.0) if modality is None else self._selector(modality)
            if (modality is not None and selector is None) or not self._entries:
                return [[] for _ in range(len(queries))]
            scores, rows = self._search_past_ties(queries, k, selector, fraction)
            return [self._ranked(score_row, row_row, k) for score_row, row_row in zip(scores, rows)]

    def _search_past_ties(
        self, queries: np.ndarray, k: int, selector: Any, fraction: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """FAISS results deep enough that every row tied with a query's k-th score is among them:
        ``k + TIE_MARGIN`` rows, doubled while the last fetched score still equals the k-th."""
        knob = next(iter(self._meta["params"].values()), None)
        total = len(self._entries)
        fetch = min(k + TIE_MARGIN, total)
        while True:
            params = kinds.search_parameters(self.kind, knob, selector, fraction, fetch)
            scores, rows = self._index.search(queries, fetch, params=params)
            if fetch >= total:
                return scores, rows
            full = rows[:, -1] >= 0  # a filtered search may run out of rows before ``fetch``
            if not (full & (scores[:, -1] == scores[:, k - 1])).any():
                return scores, rows
            fetch = min(fetch * 2, total)

    def _ranked(self, scores: np.ndarray, rows: np.ndarray, k: int) -> list[Hit]:
        entries = self._entries
        hits = [
            Hit(entries[r]["path"], entries[r].get("modality"), float(s), int(r), entries[r]["key"])
            for s, r in zip(scores, rows)
            if r >= 0
        ]
        hits.sort(key=lambda hit: (-hit.score, hit.key))
        return hits[:k]

"""The Milvus back-end: vectors and metadata in a Milvus collection, reached through ``MilvusClient``.

``uri`` is a Milvus Lite file (``./library.db``: an embedded engine inside this process) or a
server (``http://host:19530``: Milvus Standalone or Distributed); the same code talks to both.
The index folder keeps only ``meta.json`` (backend, uri, collection, token_env, index_type,
params, columns, ...); the collection is the truth for rows and metadata. A token for a server
is read from the environment variable named by ``token_env`` and never written anywhere.

Collection schema: ``key`` (VARCHAR primary key: writes are upserts, so a key is never twice in
the collection), ``vector`` (FLOAT_VECTOR, unit length, metric IP = cosine), the base metadata
(``path``, ``modality``, ``npy``, ``n_items``, ``sha256``, ``model``) and one nullable field per
catalogue column (str -> VARCHAR, int -> INT64, float -> DOUBLE, bool -> BOOL, list -> ARRAY of
VARCHAR).

Kinds map to Milvus index types: ``flat`` -> FLAT, ``hnsw`` -> HNSW (M=32, efConstruction=80),
``ivf`` -> IVF_FLAT; ``index_type`` picks another of the same family (HNSW_SQ, IVF_SQ8, ...).
The search knob (``ef`` / ``nprobe``) is calibrated like FAISS's (:func:`kinds.calibrate`'s
grid and probes) whenever the vectors of the whole collection are at hand.

The metadata table is also held in memory (rows in key order, read at open), so rows, counts
for pagination and facets work as with FAISS; ``where`` filters are sent to Milvus as its own
boolean expression (:meth:`Where.milvus`), or, when they keep few rows, answered exactly from
those rows' vectors (:mod:`clamp3.index.subset`).

Removing rows (``remove``, ``clamp3 index-remove``, a sync's deletions) cannot be one
transaction on Milvus, so it is journalled: the keys go into ``meta.json``'s ``removing`` list
before the first delete, every process that opens the index hides them, and ``save`` deletes
whatever of them is still there (deleting a missing key is a no-op) before it clears the list.
A removal killed half-way is thus invisible at once and finished by the next save.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clamp3.index import kinds
from clamp3.index.backends.milvus_schema import (
    MILVUS_ERRORS,
    check_lengths,
    connect,
    plain,
    quiet_iterator,
    resolve_uri,
    schema,
)
from clamp3.index.filters import Where
from clamp3.index.records import META_FILE, new_meta
from clamp3.index.search_index import SearchIndex
from clamp3.utils.errors import InputError
from clamp3.utils.io import write_json_atomic

log = logging.getLogger(__name__)

DEFAULT_COLLECTION = "clamp3"
WRITE_BATCH = 1000  # rows per upsert call: bounded request size; a killed sync loses at most one batch
READ_BATCH = 4000  # rows per query_iterator page when the metadata table is read
MAX_LIMIT = 16384  # Milvus's largest top-k
MAX_EF = 32768
HNSW_PARAMS = {"M": kinds.HNSW_M, "efConstruction": kinds.HNSW_EF_CONSTRUCTION}
RECALIBRATE_GROWTH = 0.1  # as FAISS: recalibrate once the collection grew 10% since the last time
FULL_SCAN_LIMIT = 200_000  # largest collection whose vectors are read back to recalibrate
_DEFAULT_TYPES = {"flat": "FLAT", "hnsw": "HNSW", "ivf": "IVF_FLAT"}
_FAMILY = {"FLAT": "flat", "HNSW": "hnsw", "HNSW_SQ": "hnsw", "IVF_FLAT": "ivf", "IVF_SQ8": "ivf"}


class MilvusIndex(SearchIndex):
    """A :class:`SearchIndex` whose vectors live in a Milvus collection (module docstring)."""

    backend = "milvus"
    max_fetch = MAX_LIMIT

    def __init__(self, client: Any, entries: list[dict[str, Any]], meta: dict[str, Any]):
        super().__init__(entries, meta)
        self._client = client

    @property
    def collection(self) -> str:
        return str(self._meta["collection"])

    # ----------------------------------------------------------------------------- creating
    @classmethod
    def create(
        cls,
        dim: int,
        kind: str = "flat",
        *,
        uri: str = "./clamp3.db",
        collection: str | None = None,
        token_env: str | None = None,
        index_type: str | None = None,
        overwrite: bool = False,
        columns: dict[str, str] | None = None,
        train_vectors: np.ndarray | None = None,
        **fields: Any,
    ) -> MilvusIndex:
        """A new, empty collection (``overwrite`` drops one of the same name first).

        IVF types size their lists from ``train_vectors`` (N, dim) when given (~sqrt(N)).
        """
        if kind not in _DEFAULT_TYPES:
            raise ValueError(f"unknown index kind {kind!r}; choose from {', '.join(_DEFAULT_TYPES)}")
        index_type = (index_type or _DEFAULT_TYPES[kind]).upper()
        if _FAMILY.get(index_type) != kind:
            raise ValueError(f"Milvus index type {index_type!r} is not of kind {kind!r}")
        uri, collection = resolve_uri(uri), collection or DEFAULT_COLLECTION
        client = connect(uri, token_env)
        if client.has_collection(collection):
            if not overwrite:
                raise InputError(f"{uri}#{collection}", "collection exists; use --overwrite or --sync")
            client.drop_collection(collection)
        columns = dict(columns or {})
        build: dict[str, Any] = dict(HNSW_PARAMS) if kind == "hnsw" else {}
        if kind == "ivf":
            build["nlist"] = kinds.ivf_lists(len(train_vectors) if train_vectors is not None else 4096)
        params = client.prepare_index_params()
        # pymilvus 3 sends build parameters flattened; Milvus Lite 3 reads them from a "params"
        # JSON entry (the older wire form, which servers still accept): send both.
        params.add_index("vector", index_type=index_type, metric_type="IP", params={**build, "params": build})
        client.create_collection(collection, schema=schema(dim, columns), index_params=params)
        meta = new_meta(dim, kind, "milvus", columns, **fields)
        meta.update({"uri": uri, "collection": collection, "token_env": token_env})
        meta.update({"index_type": index_type, "build_params": build})
        return cls(client, [], meta)

    @classmethod
    def open(cls, root: Path, meta: dict[str, Any]) -> MilvusIndex:
        """Connect to the collection ``meta`` names and read its metadata table (key order)."""
        client = connect(str(meta.get("uri")), meta.get("token_env"), existing=True)
        name = meta.get("collection", DEFAULT_COLLECTION)
        try:
            if not client.has_collection(name):
                raise InputError(root / META_FILE, f"names collection {name!r}, not in {meta.get('uri')}")
            client.load_collection(name)  # a collection starts released in a fresh process / server
            out = cls(client, [], meta)
            pending = out.pending_removal
            out._entries = [e for e in out._read_table() if e["key"] not in pending]
        except MILVUS_ERRORS as exc:
            raise InputError(f"{meta.get('uri')}#{name}", f"Milvus refused ({exc})") from exc
        out._changed()
        return out

    def _scan(self, fields: list[str]) -> Iterator[list[dict[str, Any]]]:
        """Every row of the collection, ``READ_BATCH`` at a time (the paged query API that
        servers and Lite both have; a plain ``query`` is capped at 16384 rows)."""
        with quiet_iterator():
            iterator = self._client.query_iterator(
                self.collection, batch_size=READ_BATCH, output_fields=fields
            )
            try:
                while batch := iterator.next():
                    yield batch
            finally:
                iterator.close()

    def _read_table(self) -> list[dict[str, Any]]:
        names = list(self.columns)
        rows = [{n: plain(r.get(n)) for n in names} for batch in self._scan(names) for r in batch]
        rows.sort(key=lambda r: r["key"])
        return rows

    def save(self, directory: str | os.PathLike | None = None) -> Path:
        """Flush the collection and write ``meta.json`` (where the data lives) to ``directory``."""
        target = Path(directory) if directory is not None else self.directory
        if target is None:
            raise ValueError("save() needs a directory for an index that was never saved")
        target.mkdir(parents=True, exist_ok=True)
        with self._lock.read():
            self._client.flush(self.collection)
            left = sorted(self.pending_removal - set(self._rows_by_key))  # rewritten ones stay
            if left:
                self._delete_keys(left)
                self._client.flush(self.collection)
            self._meta.pop("removing", None)
            write_json_atomic(target / META_FILE, self._meta)
        self.directory = target
        return target

    # ----------------------------------------------------------------------------- vectors
    def vector(self, row: int) -> np.ndarray:
        with self._lock.read():
            if not 0 <= row < len(self._entries):
                raise IndexError(f"row {row} out of range for an index of {len(self._entries)} rows")
            key = self._entries[row]["key"]
        found = self._client.get(self.collection, ids=[key], output_fields=["vector"])
        if not found:
            raise KeyError(f"{key!r} is no longer in collection {self.collection!r} (reload the index)")
        return np.asarray(found[0]["vector"], dtype=np.float32)

    def _vectors_of(self, rows: Sequence[int]) -> np.ndarray:
        keys = [self._entries[r]["key"] for r in rows]
        found: dict[str, Any] = {}
        for start in range(0, len(keys), READ_BATCH):
            batch = self._client.get(
                self.collection, ids=keys[start : start + READ_BATCH], output_fields=["vector"]
            )
            found.update((r["key"], r["vector"]) for r in batch)
        missing = [k for k in keys if k not in found]
        if missing:
            raise KeyError(
                f"{missing[0]!r} is no longer in collection {self.collection!r} (reload the index)"
            )
        return np.asarray([found[k] for k in keys], dtype=np.float32).reshape(len(keys), self.dim)

    def _write(self, unit: np.ndarray, rows: list[dict[str, Any]], progress: bool) -> None:
        from tqdm.auto import tqdm

        for row in rows:
            check_lengths(row, self.catalogue_columns)
        with tqdm(
            total=len(rows), desc=f"writing to Milvus {self.collection}", unit="vec", disable=not progress
        ) as bar:
            for start in range(0, len(rows), WRITE_BATCH):
                batch = [
                    {**row, "vector": unit[start + i]}
                    for i, row in enumerate(rows[start : start + WRITE_BATCH])
                ]
                self._client.upsert(self.collection, batch)
                self._entries.extend(rows[start : start + WRITE_BATCH])  # in step with what was written
                bar.update(len(batch))
        self._maybe_recalibrate(unit)

    def _delete(self, keys: list[str], replacing: bool = False) -> None:
        if not replacing:  # an upsert replaces the rows in place: no window without them
            self._meta["removing"] = sorted(self.pending_removal | set(keys))
            if self.directory is not None:  # the journal first (module docstring)
                write_json_atomic(self.directory / META_FILE, self._meta)
            self._delete_keys(keys)
        gone = set(keys)
        self._entries = [e for e in self._entries if e["key"] not in gone]

    def _delete_keys(self, keys: list[str]) -> None:
        for start in range(0, len(keys), WRITE_BATCH):
            self._client.delete(self.collection, ids=keys[start : start + WRITE_BATCH])

    # ----------------------------------------------------------------------------- tuning
    def _maybe_recalibrate(self, written: np.ndarray) -> None:
        """Re-tune ef / nprobe once the collection grew enough, from the whole collection's
        vectors when they are at hand (just written, or few enough to read back)."""
        last = int(self._meta["calibration"].get("count", 0))
        if self.kind == "flat" or (last and len(self._entries) < last * (1 + RECALIBRATE_GROWTH)):
            return
        if len(written) >= 0.9 * len(self._entries):
            self.calibrate([e["key"] for e in self._entries[-len(written) :]], written)
        elif len(self._entries) <= FULL_SCAN_LIMIT:
            self.calibrate()
        else:
            log.info(
                "Milvus %s: %d rows; keeping %s", self.collection, len(self._entries), self._meta["params"]
            )

    def calibrate(self, keys: list[str] | None = None, vectors: np.ndarray | None = None) -> None:
        """Tune ef / nprobe for the recall target now. ``keys`` and their unit ``vectors`` (N, D)
        stand for the collection (default: every row, read back from Milvus)."""
        if self.kind == "flat":
            return
        # Sealed segments first: Milvus Lite answers from its growing buffer by a slow scan.
        self._client.flush(self.collection)
        if keys is None or vectors is None:
            keys, vectors = self._all_vectors()
        calibration = self._meta["calibration"]
        knob, recall = self._calibrate(keys, vectors, calibration["target_recall@10"])
        name = "ef" if self.kind == "hnsw" else "nprobe"
        self._meta["params"] = {name: knob} if knob is not None else {}
        calibration.update({"recall@10": round(recall, 4), "count": len(self._entries)})
        kinds.report_calibration(self.kind, len(self._entries), name, knob, recall, calibration, None)

    def _all_vectors(self) -> tuple[list[str], np.ndarray]:
        keys, vectors = [], []
        for batch in self._scan(["vector"]):
            keys.extend(r["key"] for r in batch)
            vectors.extend(r["vector"] for r in batch)
        return keys, np.asarray(vectors, dtype=np.float32)

    def _knob_limit(self) -> int:
        return int(self._meta["build_params"]["nlist"]) if self.kind == "ivf" else kinds.GRID[-1]

    def _calibrate(
        self, keys: list[str], vectors: np.ndarray, target: float, k: int = 10
    ) -> tuple[int | None, float]:
        if len(vectors) <= k:
            return None, 1.0
        queries = kinds.probe_queries(vectors, 256)
        truth = kinds.exact_top_k(queries, vectors, k)
        position = {key: i for i, key in enumerate(keys)}
        limit, recall = self._knob_limit(), 0.0
        for knob in [g for g in kinds.GRID if g < limit] + [limit]:
            found = self._search_keys(queries, k, None, knob)
            rows = np.array(
                [[position.get(key, -1) for key, _ in hits] + [-1] * (k - len(hits)) for hits in found]
            )
            recall = kinds.recall_at_k(rows, truth)
            if recall >= min(1.0, target + kinds.CALIBRATION_MARGIN):
                return knob, recall
        return limit, recall

    # ----------------------------------------------------------------------------- searching
    def _search_params(self, knob: int | None, fetch: int, fraction: float) -> dict[str, Any]:
        widen = 1.0 / max(fraction, 1e-6)  # a rare filter gets about as many candidates as none
        if self.kind == "hnsw":
            return {"params": {"ef": int(min(max(max(knob or 64, fetch) * widen, fetch), MAX_EF))}}
        if self.kind == "ivf":
            return {"params": {"nprobe": int(min(max(knob or 1, 1) * widen, self._knob_limit()))}}
        return {}

    def _search_keys(
        self,
        queries: np.ndarray,
        fetch: int,
        condition: Where | None,
        knob: int | None,
        fraction: float = 1.0,
    ) -> list[list[tuple[str, float]]]:
        answer = self._client.search(
            self.collection,
            data=[q.tolist() for q in queries],
            limit=fetch,
            filter=condition.milvus() if condition is not None else "",
            search_params=self._search_params(knob, fetch, fraction),
            output_fields=[],
        )
        return [[(h["key"], float(h["distance"])) for h in hits] for hits in answer]

    def _nearest(
        self, queries: np.ndarray, fetch: int, condition: Where | None, total: int
    ) -> tuple[np.ndarray, np.ndarray]:
        knob = next(iter(self._meta["params"].values()), None)
        found = self._search_keys(queries, fetch, condition, knob, total / max(len(self._entries), 1))
        scores = np.full((len(queries), fetch), -np.inf, np.float32)
        rows = np.full((len(queries), fetch), -1, np.int64)
        for q, hits in enumerate(found):
            known = [(self._rows_by_key[key], s) for key, s in hits if key in self._rows_by_key]
            for j, (row, score) in enumerate(known[:fetch]):
                rows[q, j], scores[q, j] = row, score
        return scores, rows

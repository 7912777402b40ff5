"""The FAISS back-end: one FAISS file and a row table in the index folder (the default).

On-disk layout (``INDEX_DIR``)::

    index.faiss   the FAISS index (kind in meta.json), vectors L2-normalised, inner product
    ids.jsonl     one object per row, in row order: row + the metadata record (key, path,
                  modality, npy, n_items, sha256, model, catalogue columns)
    meta.json     see :mod:`clamp3.index.search_index`; ``files`` names the two files above

Appends only ever add rows: ``save`` writes ``ids.jsonl`` first, then ``index.faiss``, then
``meta.json``, so after an interrupted save ``ids.jsonl`` can only be *longer* than the index,
and ``load`` drops the rows the index does not hold (a rerun of the append adds them again).

Removing or replacing rows (``remove``, ``upsert``, ``clamp3 index --sync``) renumbers them, so
such a save writes a new generation of both files (``index.g<N>.faiss``, ``ids.g<N>.jsonl``)
and then ``meta.json`` naming them: the ``meta.json`` swap is the single commit point, and a
kill before it leaves the previous generation in force (stale files are cleared next time).

Filters: the metadata table is in memory; a ``where`` / modality filter becomes the rows that
pass it (:meth:`SearchIndex.matching_rows`) and a FAISS ``IDSelectorBatch`` over them.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clamp3.index import kinds
from clamp3.index.filters import Where
from clamp3.index.records import new_meta
from clamp3.index.search_index import SearchIndex, remember
from clamp3.utils.errors import InputError
from clamp3.utils.io import atomic_path, json_text, read_jsonl, write_json_atomic

log = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
IDS_FILE = "ids.jsonl"
ADD_CHUNK = 8192  # rows per FAISS add call: keeps the progress bar moving on HNSW builds
EXACT_FILTER_SHARE = 0.05  # HNSW: filters keeping at most this share of rows are searched exactly
RECALIBRATE_GROWTH = 0.1  # recalibrate an approximate index once it grew 10% since the last time


class FaissIndex(SearchIndex):
    """A :class:`SearchIndex` held by FAISS in this process (see the module docstring)."""

    backend = "faiss"

    def __init__(self, index: Any, entries: list[dict[str, Any]], meta: dict[str, Any]):
        super().__init__(entries, meta)
        self._index = index
        self._selectors: dict[str, Any] = {}
        self._renumbered = False  # rows were removed since the last save: write a new generation

    @classmethod
    def create(
        cls,
        dim: int,
        kind: str = "flat",
        *,
        train_vectors: np.ndarray | None = None,
        columns: dict[str, str] | None = None,
        **fields: Any,
    ) -> FaissIndex:
        """An empty FAISS index; ``ivf`` learns its lists from ``train_vectors`` (N, dim)."""
        from clamp3.index.search_index import normalize

        train = normalize(train_vectors) if train_vectors is not None else None
        index = kinds.new_index(kind, dim, train)
        meta = new_meta(dim, kind, "faiss", columns or {}, **fields)
        meta["files"] = {"index": INDEX_FILE, "ids": IDS_FILE}
        return cls(index, [], meta)

    @classmethod
    def open(cls, root: Path, meta: dict[str, Any]) -> FaissIndex:
        """Read the FAISS file and the row table named by ``meta`` (errors name the file)."""
        faiss = kinds.import_faiss()
        files = meta.setdefault("files", {"index": INDEX_FILE, "ids": IDS_FILE})
        index_file, ids_file = root / files["index"], root / files["ids"]
        for path in (index_file, ids_file):
            if not path.is_file():
                raise InputError(path, "missing: not an index folder (build it with `clamp3 index`)")
        try:
            index = faiss.read_index(str(index_file))
        except RuntimeError as exc:
            raise InputError(index_file, f"unreadable FAISS index ({exc})") from exc
        if index.d != meta.get("dimension"):
            raise InputError(root / "meta.json", f"dimension {meta.get('dimension')} != index's {index.d}")
        if meta.get("kind") == "hnsw":
            index.hnsw.efConstruction = kinds.HNSW_EF_CONSTRUCTION  # not stored by FAISS
        entries = [{k: v for k, v in e.items() if k != "row"} for e in read_jsonl(ids_file)]
        if len(entries) < index.ntotal:
            raise InputError(ids_file, f"{len(entries)} rows for {index.ntotal} vectors; rebuild the index")
        if len(entries) > index.ntotal:
            log.warning(
                "%s: dropping %d rows of an interrupted append", ids_file, len(entries) - index.ntotal
            )
            entries = entries[: index.ntotal]
        meta["count"] = int(index.ntotal)
        return cls(index, entries, meta)

    def save(self, directory: str | os.PathLike | None = None) -> Path:
        """Write the row table, the FAISS file and ``meta.json`` to ``directory`` (default: where
        it was loaded / saved last); a new file generation after rows were removed."""
        faiss = kinds.import_faiss()
        target = Path(directory) if directory is not None else self.directory
        if target is None:
            raise ValueError("save() needs a directory for an index that was never saved")
        target.mkdir(parents=True, exist_ok=True)
        with self._lock.read():
            old = dict(self._meta["files"])
            if self._renumbered:
                generation = int(self._meta.get("generation", 0)) + 1
                self._meta["generation"] = generation
                self._meta["files"] = {
                    "index": f"index.g{generation}.faiss",
                    "ids": f"ids.g{generation}.jsonl",
                }
            files = self._meta["files"]
            lines = [json_text({"row": i, **e}) for i, e in enumerate(self._entries)]
            with atomic_path(target / files["ids"]) as tmp:
                tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
            with atomic_path(target / files["index"]) as tmp:
                faiss.write_index(self._index, str(tmp))
            write_json_atomic(target / "meta.json", self._meta)  # the commit point
            self._clear_stale(target, {old["index"], old["ids"]} - set(files.values()))
        self._renumbered = False
        self.directory = target
        return target

    @staticmethod
    def _clear_stale(target: Path, previous: set[str]) -> None:
        """Drop the previous generation's files and any left by a killed rewrite."""
        stale = (
            previous
            | {p.name for p in target.glob("index.g*.faiss")}
            | {p.name for p in target.glob("ids.g*.jsonl")}
        )
        try:
            live = set(json.loads((target / "meta.json").read_text(encoding="utf-8"))["files"].values())
        except (OSError, ValueError, KeyError):
            return  # never delete what meta.json may still name
        for name in stale - live:
            (target / name).unlink(missing_ok=True)

    # ----------------------------------------------------------------------------- vectors
    def vector(self, row: int) -> np.ndarray:
        """Every kind can give its vectors back: flat and HNSW store them, IVF keeps a direct map."""
        with self._lock.read():
            if not 0 <= row < len(self._entries):
                raise IndexError(f"row {row} out of range for an index of {len(self._entries)} rows")
            return self._index.reconstruct(int(row))

    def _vectors_of(self, rows: Sequence[int]) -> np.ndarray:
        if not len(rows):
            return np.zeros((0, self.dim), np.float32)
        return self._index.reconstruct_batch(np.asarray(rows, dtype=np.int64))

    def _write(self, unit: np.ndarray, rows: list[dict[str, Any]], progress: bool) -> None:
        from tqdm.auto import tqdm

        with tqdm(
            total=len(unit), desc=f"adding to {self.kind} index", unit="vec", disable=not progress
        ) as bar:
            for start in range(0, len(unit), ADD_CHUNK):
                self._index.add(unit[start : start + ADD_CHUNK])
                bar.update(min(ADD_CHUNK, len(unit) - start))
        self._entries.extend(rows)
        self._selectors = {}
        self._meta["count"] = len(self._entries)
        self._maybe_recalibrate()

    def _delete(self, keys: list[str], replacing: bool = False) -> None:
        """Rebuild the FAISS index without those rows (same kind; IVF keeps its trained lists):
        HNSW graphs cannot drop nodes, and one code path for every kind keeps rows in step."""
        drop = {self._rows_by_key[k] for k in keys}
        keep = np.array([i for i in range(len(self._entries)) if i not in drop], np.int64)
        vectors = self._index.reconstruct_n(0, self._index.ntotal)[keep] if len(keep) else None
        fresh = kinds.import_faiss().clone_index(self._index)
        fresh.reset()
        if vectors is not None:
            for start in range(0, len(vectors), ADD_CHUNK):
                fresh.add(vectors[start : start + ADD_CHUNK])
        self._index = fresh
        self._entries = [self._entries[i] for i in keep]
        self._selectors = {}
        self._renumbered = True
        self._meta["calibration"]["count"] = 0  # the collection changed: tune again

    def _maybe_recalibrate(self) -> None:
        """Re-tune efSearch/nprobe when the collection grew enough to change the recall."""
        last = int(self._meta["calibration"].get("count", 0))
        if self.kind != "flat" and not (last and len(self._entries) < last * (1 + RECALIBRATE_GROWTH)):
            self.calibrate()

    def calibrate(self, vectors: np.ndarray | None = None) -> None:
        """Tune efSearch/nprobe for the recall target now (:func:`kinds.calibrate`). ``vectors``:
        the stored unit vectors (N, D) in row order, e.g. a memory map (default: read back)."""
        if self.kind == "flat":
            return
        calibration = self._meta["calibration"]
        if vectors is None:
            vectors = self._index.reconstruct_n(0, self._index.ntotal)
        knob, recall = kinds.calibrate(
            self.kind, self._index, vectors, target=calibration["target_recall@10"]
        )
        name = "efSearch" if self.kind == "hnsw" else "nprobe"
        self._meta["params"] = {name: knob} if knob is not None else {}
        calibration.update({"recall@10": round(recall, 4), "count": len(self._entries)})
        kinds.report_calibration(self.kind, len(self._entries), name, knob, recall, calibration, self._index)

    # ----------------------------------------------------------------------------- searching
    def _selector(self, condition: Where) -> Any:
        selector = self._selectors.get(condition.text)
        if selector is None:
            selector = kinds.import_faiss().IDSelectorBatch(self.matching_rows(condition))
            remember(self._selectors, condition.text, selector)
        return selector

    def _nearest(
        self, queries: np.ndarray, fetch: int, condition: Where | None, total: int
    ) -> tuple[np.ndarray, np.ndarray]:
        knob = next(iter(self._meta["params"].values()), None)
        selector = None if condition is None else self._selector(condition)
        fraction = total / max(len(self._entries), 1)
        if selector is not None and self.kind == "hnsw" and fraction <= EXACT_FILTER_SHARE:
            # A rare filter makes the graph walk visit mostly rows it must skip (measured: 300x
            # an unfiltered query at 1 %); the graph's flat storage scanned with the selector
            # computes only the selected rows, and is exact.
            faiss = kinds.import_faiss()
            params = faiss.SearchParameters()
            params.sel = selector
            return faiss.downcast_index(self._index.storage).search(queries, fetch, params=params)
        params = kinds.search_parameters(self.kind, knob, selector, fraction, fetch)
        return self._index.search(queries, fetch, params=params)

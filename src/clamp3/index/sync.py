"""Incremental sync (``clamp3 index --sync``): make an index hold exactly an embedding folder.

The plan compares the folder's items with the index's rows by key:

* **new**: a key the index lacks -> added;
* **changed**: a key whose source file changed (``sha256`` differs, when both sides know it;
  otherwise the stored vector differs from the folder's), or whose metadata changed (path,
  modality, npy, n_items, catalogue columns) -> replaced (an upsert by key);
* **vanished**: an indexed key the folder no longer has -> deleted.

Why a killed sync can simply be rerun: every write is an upsert by key (Milvus: the primary
key; FAISS: the whole sync is saved once, behind a single ``meta.json`` swap), so a rerun sees
the rows already written as unchanged, writes the rest, and deletes what is still there to
delete. Nothing is written twice and nothing written is lost.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from clamp3.index.records import entry_of
from clamp3.index.search_index import SearchIndex, normalize

VECTOR_TOLERANCE = 1e-5  # max abs difference of unit vectors still counted as the same embedding
COMPARE_BATCH = 4096  # stored vectors fetched per call when comparing without sha256


@dataclass
class SyncPlan:
    """Rows of the folder to add (``new``) and to replace (``changed``), keys to delete."""

    new: list[int]
    changed: list[int]
    vanished: list[str]
    unchanged: int

    @property
    def writes(self) -> list[int]:
        return sorted(self.new + self.changed)


def _same_metadata(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    # sha256 is compared on its own; a model id that moved (same fingerprint) changes nothing.
    return all(stored.get(name) == value for name, value in wanted.items() if name not in ("sha256", "model"))


def plan_sync(index: SearchIndex, vectors: np.ndarray, records: Sequence[Mapping[str, Any]]) -> SyncPlan:
    """Compare the folder's ``vectors`` (N, D) and ``records`` with ``index`` (nothing is written)."""
    columns = index.catalogue_columns
    new, changed, unknown = [], [], []
    seen = set()
    for i, record in enumerate(records):
        key = str(record["key"])
        seen.add(key)
        if key not in index:
            new.append(i)
            continue
        stored = index.entry(index.row_of(key))
        wanted = entry_of(record, columns)
        source_changed = _source_changed(stored, wanted.get("sha256"))
        if not _same_metadata(stored, wanted) or source_changed:
            changed.append(i)
        elif source_changed is None:
            unknown.append(i)
    changed.extend(_vector_changes(index, vectors, records, unknown))
    vanished = sorted(e["key"] for e in index.entries() if e["key"] not in seen)
    unchanged = len(records) - len(new) - len(changed)
    return SyncPlan(new, sorted(changed), vanished, unchanged)


def changed_sources(index: SearchIndex, records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Keys of ``records`` that the index holds for another version of the file (both sides
    know ``sha256`` and they differ): what ``--append`` keeps as it was and ``--sync`` replaces."""
    out = []
    for record in records:
        key = str(record["key"])
        if key in index and _source_changed(index.entry(index.row_of(key)), record.get("sha256")):
            out.append(key)
    return out


def _source_changed(stored: Mapping[str, Any], sha256: str | None) -> bool | None:
    """Whether the file behind ``stored`` changed: None when either side lacks its sha256."""
    if not (stored.get("sha256") and sha256):
        return None
    return stored["sha256"] != sha256


def _vector_changes(
    index: SearchIndex, vectors: np.ndarray, records: Sequence[Mapping[str, Any]], rows: list[int]
) -> list[int]:
    """Of folder ``rows`` (indexed keys without a usable sha256), those whose vector changed."""
    out = []
    for start in range(0, len(rows), COMPARE_BATCH):
        batch = rows[start : start + COMPARE_BATCH]
        stored = index.stored_vectors([index.row_of(str(records[i]["key"])) for i in batch])
        fresh = normalize(vectors[batch])
        differs = np.abs(stored - fresh).max(axis=1) > VECTOR_TOLERANCE
        out.extend(i for i, d in zip(batch, differs) if d)
    return out


def apply_sync(
    index: SearchIndex,
    vectors: np.ndarray,
    records: Sequence[Mapping[str, Any]],
    plan: SyncPlan,
    *,
    progress: bool = False,
) -> None:
    """Write ``plan``: upsert new and changed rows, then delete vanished keys."""
    rows = plan.writes
    if rows:
        index.upsert(vectors[rows], [records[i] for i in rows], progress=progress)
    if plan.vanished:
        index.remove(plan.vanished)

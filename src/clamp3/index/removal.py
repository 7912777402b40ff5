"""Remove chosen items from an index folder (``clamp3 index-remove``), on either back-end.

Items are named by key (the embedding's relative path without ``.npy``), by the original path
recorded for it, or by its ``.npy`` path, as ``search`` prints them. Every name is resolved
before anything is written: one that names no item (or more than one) is an ``InputError`` and
the index is left as it was. A name removed before is reported and passed over, so the same
removal run again (a script's rerun) succeeds and changes nothing.

Atomic and resumable like ``clamp3 index --sync``: FAISS writes the index without those rows as
a new file generation and commits it with one ``meta.json`` swap (a kill before it leaves the
old index in force); Milvus journals the keys in ``meta.json`` first, so a kill half-way hides
them at once, and a rerun of the same command, or any later save, deletes the rest
(:mod:`clamp3.index.backends.milvus`). Keys already so journalled count as known in a rerun.

Removed items stay out: they are recorded in ``meta.json`` (``withdrawn``, key -> path), and
``index --append`` / ``--sync`` skip them although their embeddings are still in the folder, until
``index-remove --undo`` readmits them (``--overwrite`` starts a new index and forgets the list).
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from clamp3.index.search_index import SearchIndex
from clamp3.utils.errors import InputError

SHOWN_UNKNOWN = 5  # unknown names quoted in the one-line error


@dataclass
class RemoveReport:
    """``removed`` keys (sorted), the rows ``total`` left in the saved index, and the names
    given that were ``removed_before`` (withdrawn by an earlier removal; passed over)."""

    index_dir: Path
    backend: str
    removed: list[str]
    total: int
    removed_before: list[str] = field(default_factory=list)


def _spellings(name: str) -> set[str]:
    """A name as given, with ``./`` and repeated separators folded, and without ``.npy``."""
    plain = posixpath.normpath(name.replace(os.sep, "/")) if name else name
    out = {name, plain}
    out |= {n[: -len(".npy")] for n in out if n.endswith(".npy")}
    return out


def _by_name(index: SearchIndex) -> dict[str, set[str]]:
    """Every spelling of every item's key, path and ``.npy`` path -> the keys it names."""
    out: dict[str, set[str]] = {}
    for entry in index.entries():
        for column in ("key", "path", "npy"):
            if entry.get(column):
                for spelling in _spellings(str(entry[column])):
                    out.setdefault(spelling, set()).add(entry["key"])
    return out


def _withdrawn_by_name(index: SearchIndex) -> dict[str, str]:
    """Every spelling of every withdrawn item's key and path -> its key."""
    out: dict[str, str] = {}
    for key, path in index.withdrawn.items():
        for spelling in _spellings(key) | _spellings(path):
            out.setdefault(spelling, key)
    return out


def resolve_items(index: SearchIndex, names: Iterable[str]) -> tuple[list[str], list[str]]:
    """(the keys ``names`` denote, sorted and each once; the names of items removed before);
    ``InputError`` naming the index folder when a name matches no item or several. Keys of a
    removal cut short count as known."""
    pending = index.pending_removal
    keys, rest = set(), []
    for name in dict.fromkeys(names):
        if name in index or name in pending:  # an exact key wins over any path spelling
            keys.add(name)
        else:
            rest.append(name)
    by_name = _by_name(index) if rest else {}
    withdrawn = _withdrawn_by_name(index) if rest else {}
    unknown, before = [], []
    root = index.meta.get("input_root")
    for name in rest:
        spellings = _spellings(name)
        if root:  # a path to the original file, from here: relative to the recorded input root
            spellings |= _spellings(os.path.relpath(os.path.abspath(name), root))
        matches = set().union(*(by_name.get(s, set()) for s in spellings))
        if len(matches) > 1:
            shown = ", ".join(sorted(matches)[:3])
            raise InputError(name, f"names {len(matches)} items ({shown}, ...); give their keys")
        if not matches:
            (before if spellings & withdrawn.keys() else unknown).append(name)
        keys |= matches
    if unknown:
        shown = ", ".join(unknown[:SHOWN_UNKNOWN]) + (" ..." if len(unknown) > SHOWN_UNKNOWN else "")
        where = index.directory or "the index"
        raise InputError(
            where,
            f"{len(unknown)} not indexed ({shown}; name keys or paths as `clamp3 search` prints them); "
            "nothing was removed",
        )
    return sorted(keys), before


def remove_items(index_dir: str | os.PathLike, names: Iterable[str]) -> RemoveReport:
    """Remove the items ``names`` (keys or paths) from the index folder ``index_dir`` and save.

    They are recorded as withdrawn (``SearchIndex.withdrawn``), so a later ``index
    --append`` or ``--sync`` of the embedding folder, which still holds them, does not bring them
    back; :func:`readmit_items` undoes that."""
    root = Path(index_dir)
    index = SearchIndex.load(root)
    keys, before = resolve_items(index, names)
    if not keys and not before:
        raise InputError(root, "no items to remove were given")
    if not keys:  # all removed before: nothing to write
        return RemoveReport(root, index.backend, [], len(index), before)
    paths = {k: str(index.entry(index.row_of(k)).get("path") or k) if k in index else k for k in keys}
    # Recorded first: Milvus journals meta.json inside remove(), so a kill keeps the intent too.
    index.withdrawn = {**index.withdrawn, **paths}
    index.remove([k for k in keys if k in index])  # journalled ones are deleted by the save
    index.save(root)
    return RemoveReport(root, index.backend, keys, len(index), before)


def readmit_items(index_dir: str | os.PathLike, names: Iterable[str]) -> RemoveReport:
    """Take withdrawn items (named by key or by the path they had) off the withdrawn list of
    ``index_dir``, so the next ``index --append`` / ``--sync`` indexes them again; returns them
    as ``removed`` (the rows are unchanged). ``InputError`` when a name is not withdrawn."""
    root = Path(index_dir)
    index = SearchIndex.load(root)
    withdrawn = index.withdrawn
    by_name = _withdrawn_by_name(index)
    keys, unknown = set(), []
    for name in dict.fromkeys(names):
        hits = {by_name[s] for s in _spellings(name) if s in by_name}
        keys |= hits
        if not hits:
            unknown.append(name)
    if unknown:
        shown = ", ".join(unknown[:SHOWN_UNKNOWN]) + (" ..." if len(unknown) > SHOWN_UNKNOWN else "")
        raise InputError(
            root, f"{len(unknown)} not removed by index-remove ({shown}); nothing was readmitted"
        )
    if not keys:
        raise InputError(root, "no items to readmit were given")
    index.withdrawn = {k: v for k, v in withdrawn.items() if k not in keys}
    index.save(root)
    return RemoveReport(root, index.backend, sorted(keys), len(index))

"""Class labels for embedded items: a CSV ``path,label[,label...]`` or the item's first folder.

A CSV row names an item by its path relative to the embedded tree, with or without the
extension (``jazz/take1.mid`` or ``jazz/take1``); a first row whose first cell is ``path`` is a
header. Every further non-empty cell is one label, so single-label files have two columns and
multi-label (tagging) files have as many as the item needs (a bare path = no tags; in
single-label mode that is an error).

``--labels-from-folders`` uses the first folder of the relative path instead:
``jazz/take1.mid`` -> ``jazz``; a file at the top level has no folder and is an error.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import PurePosixPath

import numpy as np

from clamp3.utils.errors import InputError
from clamp3.utils.io import csv_rows, read_text

log = logging.getLogger(__name__)


def normalize_relpath(path: str) -> str:
    """A relative path with ``/`` separators and no leading ``./`` (the matching key)."""
    return PurePosixPath(path.replace("\\", "/")).as_posix().removeprefix("./")


def strip_extension(path: str) -> str:
    """``a/b/take1.mid`` -> ``a/b/take1`` (only the last suffix goes)."""
    pure = PurePosixPath(path)
    return pure.with_suffix("").as_posix() if pure.suffix else path


def read_label_csv(path: str | os.PathLike) -> dict[str, list[str]]:
    """``{relative path: [labels]}`` from a ``path,label[,label...]`` CSV (UTF-8, any language).

    Raises ``InputError`` naming the file and line for a row without a path or a path given twice.
    """
    table: dict[str, list[str]] = {}
    for line, row in csv_rows(read_text(path)):
        cells = [c.strip() for c in row]
        if not any(cells):
            continue
        if line == 1 and cells[0].lower() == "path":
            continue
        if not cells[0]:
            raise InputError(path, f"line {line}: expected 'path,label[,label...]', got {row!r}")
        labels = [c for c in cells[1:] if c]
        key = normalize_relpath(cells[0])
        if key in table:
            raise InputError(path, f"line {line}: {cells[0]!r} is listed twice")
        table[key] = labels
    if not table:
        raise InputError(path, "the label file has no rows")
    return table


def folder_label(relpath: str) -> str:
    """The first folder of a relative path (the class when labels come from folder names)."""
    parts = PurePosixPath(normalize_relpath(relpath)).parts
    if len(parts) < 2:
        raise InputError(
            relpath, "is not inside a class folder (--labels-from-folders needs DIR/<label>/...)"
        )
    return parts[0]


def match_labels(
    paths: Sequence[str], table: dict[str, list[str]], source: str | os.PathLike = "labels"
) -> list[list[str] | None]:
    """Labels of each item path (``None`` when the table does not name it).

    Paths are compared with and without their extension on both sides, so the row
    ``jazz/take1.mid`` labels the item ``jazz/take1.mid`` and also ``jazz/take1.npy`` (an
    embedding folder without a manifest). An item reached by two rows raises ``InputError``;
    rows matching no item are logged.
    """
    index: dict[str, set[str]] = {}
    for row in table:
        for key in (row, strip_extension(row)):
            index.setdefault(key, set()).add(row)
    found: list[list[str] | None] = []
    used: set[str] = set()
    for path in paths:
        rel = normalize_relpath(path)
        exact = index.get(rel, set()) & {rel}
        hits = sorted(exact or set().union(*(index.get(k, set()) for k in (rel, strip_extension(rel)))))
        if len(hits) > 1:
            raise InputError(source, f"{path} is labelled by several rows: {hits}")
        found.append(table[hits[0]] if hits else None)
        used.update(hits)
    if unused := sorted(set(table) - used):
        log.warning("%s: %d labelled paths match no item (e.g. %s)", source, len(unused), unused[0])
    return found


def labels_for(
    paths: Sequence[str], csv_path: str | os.PathLike | None, from_folders: bool
) -> list[list[str] | None]:
    """Labels per item from a CSV (``csv_path``) or from folder names (``from_folders``)."""
    if (csv_path is None) == (not from_folders):
        raise ValueError("give exactly one label source: a CSV file or from_folders=True")
    if from_folders:
        return [[folder_label(p)] for p in paths]
    return match_labels(paths, read_label_csv(csv_path), source=csv_path)


def labelled_items(
    labels: Sequence[Sequence[str] | None],
    paths: Sequence[str],
    source: str | os.PathLike,
    purpose: str = "are left out",
) -> list[int]:
    """Indices of the items that have a label (``labels[i] is not None``), in order.

    The items a label file does not name are logged once (their count and the first few, then
    ``purpose``); none labelled raises ``InputError`` naming ``source``. Training, metrics and
    zero-shot truth all use this one rule: a label file may cover part of an embedding folder.
    """
    known = [i for i, lab in enumerate(labels) if lab is not None]
    if not known:
        raise InputError(source, f"no item of the {len(paths)} has a label")
    if missing := [p for p, lab in zip(paths, labels) if lab is None]:
        shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
        log.warning(
            "%s: %d of %d items have no label and %s (%s)", source, len(missing), len(paths), purpose, shown
        )
    return known


def single_label_targets(
    labels: Sequence[Sequence[str]],
    names: Sequence[str] | None = None,
    source: str | os.PathLike = "labels",
    paths: Sequence[str] | None = None,
) -> tuple[np.ndarray, list[str]]:
    """One label per item -> int64 class indices (N,) and the class names (sorted by default).

    With ``names`` given, a label outside them raises ``InputError``; ``paths`` name the items
    in error messages.
    """
    for i, item in enumerate(labels):
        if len(item) != 1:
            what = paths[i] if paths is not None else f"item {i}"
            raise InputError(
                source,
                f"{what}: single-label mode needs one label per item, got {list(item)} (or use --multi-label)",
            )
    names = sorted({item[0] for item in labels}) if names is None else list(names)
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted({item[0] for item in labels} - set(index))
    if unknown:
        raise InputError(source, f"labels not among the classes {names}: {unknown}")
    return np.array([index[item[0]] for item in labels], dtype=np.int64), names


def multi_label_targets(
    labels: Sequence[Sequence[str]], names: Sequence[str] | None = None, source: str | os.PathLike = "labels"
) -> tuple[np.ndarray, list[str]]:
    """Label lists -> a multi-hot bool matrix (N, C) and the label names (sorted by default)."""
    names = sorted({lab for item in labels for lab in item}) if names is None else list(names)
    index = {name: i for i, name in enumerate(names)}
    targets = np.zeros((len(labels), len(names)), dtype=bool)
    for row, item in enumerate(labels):
        for lab in item:
            if lab not in index:
                raise InputError(source, f"label {lab!r} is not among the probe's labels")
            targets[row, index[lab]] = True
    return targets, names


def read_lines(path: str | os.PathLike, what: str) -> list[str]:
    """Non-empty stripped lines of a text file (label or template lists; :func:`read_text`)."""
    lines = [line.strip() for line in read_text(path).splitlines() if line.strip()]
    if not lines:
        raise InputError(path, f"the {what} file is empty")
    return lines

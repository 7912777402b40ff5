"""The pipelines behind ``clamp3 probe``, ``clamp3 zero-shot`` and ``clamp3 gen-score``.

Each reads its inputs (embedding folders from ``clamp3 embed``, or raw files encoded with a
model), runs the library functions of this package, writes its outputs atomically and returns
a JSON-ready summary. Output formats are described in ``docs/classify.md``.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from clamp3.evaluate.labels import (
    labels_for,
    multi_label_targets,
    normalize_relpath,
    require_all,
    single_label_targets,
)
from clamp3.utils.errors import InputError
from clamp3.utils.io import write_json_atomic

if TYPE_CHECKING:
    from clamp3.evaluate.probe import LinearProbe
    from clamp3.evaluate.probe_train import ProbeSettings
    from clamp3.model import Clamp3Model

log = logging.getLogger(__name__)


@dataclass
class Items:
    """Vectors (N, D) float32, not normalised, with their relative paths (with extension)."""

    paths: list[str]
    vectors: np.ndarray


def collect_files(sources: Sequence[str | os.PathLike]) -> list[tuple[Path, str]]:
    """Files to encode -> ``(path, relative path)``.

    A folder contributes every supported file below it (recursively, hidden entries skipped),
    named relative to that folder; a file is named as given.
    """
    from clamp3.encode import FILE_EXTENSIONS

    found: dict[Path, str] = {}
    for source in sources:
        root = Path(source)
        if root.is_file():
            found.setdefault(root, normalize_relpath(str(source)))
            continue
        if not root.is_dir():
            raise InputError(root, "no such file or folder")
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if not name.startswith(".") and path.suffix.lower() in FILE_EXTENSIONS:
                    found.setdefault(path, path.relative_to(root).as_posix())
    if not found:
        raise InputError(", ".join(map(str, sources)), "no supported input files found")
    return sorted(found.items(), key=lambda item: item[1])


def load_items(
    sources: Sequence[str | os.PathLike],
    model: Clamp3Model | None,
    embeddings: bool,
    batch_size: int = 32,
    show_progress: bool = False,
) -> Items:
    """Vectors of ``sources``: embedding folders (``embeddings=True``) or files encoded by ``model``."""
    if embeddings:
        from clamp3.index.embeddings import load_embeddings

        paths, blocks = [], []
        for source in sources:
            found = load_embeddings(
                source, dim=blocks[0].shape[1] if blocks else None, progress=show_progress
            )
            paths.extend(found.paths)
            blocks.append(found.vectors)
        return Items(paths, np.concatenate(blocks))
    if model is None:
        raise ValueError("a model is needed to encode files (or pass embedding folders)")
    files = collect_files(sources)
    vectors = model.encode(
        [str(path) for path, _ in files], batch_size=batch_size, normalize=False, show_progress=show_progress
    )
    return Items([rel for _, rel in files], vectors)


def provenance() -> dict:
    from clamp3 import __version__

    return {"created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), "clamp3_version": __version__}


def _targets(
    labels: list[list[str]], paths: list[str], names: list[str] | None, multi: bool, source
) -> tuple[np.ndarray, list[str]]:
    if multi:
        return multi_label_targets(labels, names, source)
    return single_label_targets(labels, names, source, paths)


# ------------------------------------------------------------------------------------- probe
def run_probe_train(
    emb_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    labels_csv: str | os.PathLike | None,
    from_folders: bool,
    settings: ProbeSettings,
    show_progress: bool = False,
) -> dict:
    """Train a probe on an embedding folder, save it (+ ``confusion.png``) in ``out_dir``; return its info."""
    from clamp3.evaluate.probe_train import train_probe
    from clamp3.index.embeddings import load_embeddings

    found = load_embeddings(emb_dir, progress=show_progress)
    source = labels_csv if labels_csv is not None else emb_dir
    labels = labels_for(found.paths, labels_csv, from_folders)
    require_all(labels, found.paths, source)
    targets, names = _targets(labels, found.paths, None, settings.multi_label, source)
    if len(names) < 2 and not settings.multi_label:
        raise InputError(source, f"a classifier needs at least two classes, found {names}")
    probe = train_probe(found.vectors, targets, names, settings, show_progress=show_progress)
    counts = targets.sum(axis=0) if settings.multi_label else np.bincount(targets, minlength=len(names))
    probe.info["data"].update(
        embeddings=str(emb_dir),
        labels=str(labels_csv) if labels_csv is not None else "folders",
        n_items=len(found),
        model=found.model,
        counts={name: int(c) for name, c in zip(names, counts)},
    )
    probe.info.update(provenance())
    probe.save(out_dir)
    if not settings.multi_label:
        from clamp3.evaluate.confusion import plot_confusion

        split = "val" if "val" in probe.info["metrics"] else "train"
        plot_confusion(
            probe.info["metrics"][split]["confusion"],
            names,
            Path(out_dir) / "confusion.png",
            f"probe ({split})",
        )
    return probe.info


def _prediction_records(probe: LinearProbe, paths: list[str], vectors: np.ndarray, top_k: int) -> list[dict]:
    probabilities = probe.probabilities(vectors)
    records = []
    if probe.multi_label:
        chosen = probe.predict(vectors)
        for path, row, picks in zip(paths, probabilities, chosen):
            labels = [probe.labels[c] for c in np.flatnonzero(picks)]
            scores = {name: round(float(p), 6) for name, p in zip(probe.labels, row)}
            records.append({"path": path, "labels": labels, "probabilities": scores})
        return records
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, : max(1, top_k)]
    for path, row, idx in zip(paths, probabilities, order):
        top = [{"label": probe.labels[c], "probability": round(float(row[c]), 6)} for c in idx]
        records.append({"path": path, "label": top[0]["label"], "top": top})
    return records


def run_probe_predict(
    probe_dir: str | os.PathLike,
    emb_dir: str | os.PathLike,
    out_json: str | os.PathLike,
    top_k: int = 3,
    truth_csv: str | os.PathLike | None = None,
    truth_from_folders: bool = False,
    plot: str | os.PathLike | None = None,
    show_progress: bool = False,
) -> dict:
    """Predict every embedding of ``emb_dir`` with a saved probe; with known labels add metrics."""
    from clamp3.evaluate.probe import LinearProbe
    from clamp3.index.embeddings import load_embeddings

    probe = LinearProbe.load(probe_dir)
    found = load_embeddings(emb_dir, dim=probe.input_dim, progress=show_progress)
    result = {
        "probe": str(probe_dir),
        "embeddings": str(emb_dir),
        "task": probe.task,
        "labels": probe.labels,
        "predictions": _prediction_records(probe, found.paths, found.vectors, top_k),
        **provenance(),
    }
    if truth_csv is not None or truth_from_folders:
        source = truth_csv if truth_csv is not None else emb_dir
        truth = labels_for(found.paths, truth_csv, truth_from_folders)
        known = [i for i, lab in enumerate(truth) if lab is not None]
        if not known:
            raise InputError(source, "no item has a known label")
        targets, _ = _targets(
            [truth[i] for i in known],
            [found.paths[i] for i in known],
            probe.labels,
            probe.multi_label,
            source,
        )
        result["metrics"] = probe.evaluate(found.vectors[known], targets)
        if plot is not None and not probe.multi_label:
            from clamp3.evaluate.confusion import plot_confusion

            plot_confusion(result["metrics"]["confusion"], probe.labels, plot, "probe predictions")
    write_json_atomic(out_json, result)
    return result


# ------------------------------------------------------------------------------------- zero-shot
def run_zero_shot(
    sources: Sequence[str | os.PathLike],
    model: Clamp3Model,
    labels: Sequence[str],
    templates: Sequence[str],
    top_k: int = 3,
    truth_csv: str | os.PathLike | None = None,
    truth_from_folders: bool = False,
    embeddings: bool = False,
    json_out: str | os.PathLike | None = None,
    plot: str | os.PathLike | None = None,
    batch_size: int = 32,
    show_progress: bool = False,
) -> dict:
    """Zero-shot classify files (or embedding folders) against ``labels``; metrics with known labels."""
    from clamp3.evaluate.classmetrics import single_label_metrics
    from clamp3.evaluate.zeroshot import encode_classes, zero_shot_scores
    from clamp3.evaluate.zeroshot import top_k as best_labels

    classes = encode_classes(model, labels, templates, batch_size)
    names = [label.strip() for label in labels]
    items = load_items(sources, model, embeddings, batch_size, show_progress)
    scores = zero_shot_scores(items.vectors, classes)
    records = [
        {"path": path, "label": top[0]["label"], "top": top}
        for path, top in zip(items.paths, best_labels(scores, names, top_k))
    ]
    result = {"labels": names, "templates": list(templates), "predictions": records, **provenance()}
    if truth_csv is not None or truth_from_folders:
        source = truth_csv if truth_csv is not None else ", ".join(map(str, sources))
        truth = labels_for(items.paths, truth_csv, truth_from_folders)
        known = [i for i, lab in enumerate(truth) if lab is not None]
        if not known:
            raise InputError(source, "no item has a known label")
        targets, _ = single_label_targets(
            [truth[i] for i in known], names, source, [items.paths[i] for i in known]
        )
        known_scores = scores[known]
        result["metrics"] = single_label_metrics(targets, known_scores.argmax(axis=1), names, known_scores)
        for record, target in zip((records[i] for i in known), targets):
            record["truth"] = names[target]
        if plot is not None:
            from clamp3.evaluate.confusion import plot_confusion

            plot_confusion(result["metrics"]["confusion"], names, plot, "zero-shot")
    if json_out is not None:
        write_json_atomic(json_out, result)
    return result

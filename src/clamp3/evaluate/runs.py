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
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from clamp3.evaluate.items import check_output_file, failures_of, load_items, read_embedding_folder
from clamp3.evaluate.labels import labelled_items, labels_for, multi_label_targets, single_label_targets
from clamp3.formats import load_folder_identity
from clamp3.model_identity import ModelIdentity, identify, require_same_model
from clamp3.utils.errors import InputError
from clamp3.utils.io import write_json_atomic
from clamp3.utils.plotting import check_figure_path

if TYPE_CHECKING:
    from clamp3.evaluate.probe import LinearProbe
    from clamp3.evaluate.probe_train import ProbeSettings
    from clamp3.index.embeddings import EmbeddingSet
    from clamp3.model import Clamp3Model

log = logging.getLogger(__name__)


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
    from clamp3.evaluate.probe import PROBE_CONFIG
    from clamp3.evaluate.probe_train import train_probe
    from clamp3.index.embeddings import load_embeddings

    check_output_file(Path(out_dir) / PROBE_CONFIG)
    found = load_embeddings(emb_dir, progress=show_progress)
    source = labels_csv if labels_csv is not None else emb_dir
    labels = labels_for(found.paths, labels_csv, from_folders)
    known = labelled_items(labels, found.paths, source, "are left out of training")
    paths = [found.paths[i] for i in known]
    targets, names = _targets([labels[i] for i in known], paths, None, settings.multi_label, source)
    if len(names) < 2 and not settings.multi_label:
        raise InputError(source, f"a classifier needs at least two classes, found {names}")
    probe = train_probe(found.vectors[known], targets, names, settings, show_progress=show_progress)
    counts = targets.sum(axis=0) if settings.multi_label else np.bincount(targets, minlength=len(names))
    probe.info["data"].update(
        embeddings=str(emb_dir),
        labels=str(labels_csv) if labels_csv is not None else "folders",
        n_items=len(known),
        n_unlabelled=len(found) - len(known),
        model=found.identity.id if found.identity else None,
        model_identity=found.identity.to_json() if found.identity else None,
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
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :top_k]
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
    allow_model_mismatch: bool = False,
) -> dict:
    """Predict every embedding of ``emb_dir`` with a saved probe; with known labels add metrics.

    ``top_k`` >= 1 labels are listed per item (single-label). ``plot`` (a confusion-matrix PNG)
    needs known labels and a single-label probe, else ``ValueError``. Embeddings of another model
    than the probe's training embeddings (manifest ``model`` vs ``probe.json`` ``data``) raise
    ``ModelMismatch`` unless ``allow_model_mismatch``; the verdict is stored as ``model_check``.
    An embedding that cannot be read is reported and left out (``result["failed"]``,
    ``{path, reason}``), as ``clamp3 zero-shot`` leaves out files; ``InputError`` when none can be.
    """
    from clamp3.evaluate.probe import LinearProbe

    _check_top_k(top_k)
    has_truth = truth_csv is not None or truth_from_folders
    check_plot(plot, truth_csv, truth_from_folders)
    check_output_file(out_json)
    probe = LinearProbe.load(probe_dir)
    if plot is not None and probe.multi_label:
        raise ValueError("--plot draws a single-label confusion matrix; this probe is multi-label")
    trained_on = ModelIdentity.from_json((probe.info.get("data") or {}).get("model_identity"))
    verdict = require_same_model(
        (f"the probe's training embeddings ({probe_dir})", trained_on),
        (f"the embeddings of {emb_dir}", load_folder_identity(emb_dir)),
        emb_dir,
        allow_mismatch=allow_model_mismatch,
    )
    found = read_embedding_folder(emb_dir, probe.input_dim, show_progress)
    result = {
        "probe": str(probe_dir),
        "embeddings": str(emb_dir),
        "task": probe.task,
        "labels": probe.labels,
        "model_check": verdict,
        "predictions": _prediction_records(probe, found.paths, found.vectors, top_k),
        "failed": failures_of(found),
        **provenance(),
    }
    if has_truth:
        result["metrics"] = _probe_metrics(probe, found, truth_csv, truth_from_folders, emb_dir)
        if plot is not None:
            from clamp3.evaluate.confusion import plot_confusion

            plot_confusion(result["metrics"]["confusion"], probe.labels, plot, "probe predictions")
    write_json_atomic(out_json, result)
    return result


def _probe_metrics(
    probe: LinearProbe,
    found: EmbeddingSet,
    truth_csv: str | os.PathLike | None,
    truth_from_folders: bool,
    emb_dir: str | os.PathLike,
) -> dict:
    """The probe's metrics over the items of ``found`` that have a known label."""
    source = truth_csv if truth_csv is not None else emb_dir
    truth = labels_for(found.paths, truth_csv, truth_from_folders)
    known = labelled_items(truth, found.paths, source, "are not counted in the metrics")
    targets, _ = _targets(
        [truth[i] for i in known], [found.paths[i] for i in known], probe.labels, probe.multi_label, source
    )
    return probe.evaluate(found.vectors[known], targets)


def _check_top_k(top_k: int) -> None:
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")


def check_plot(
    plot: str | os.PathLike | None, truth_csv: str | os.PathLike | None, truth_from_folders: bool
) -> None:
    """A confusion matrix needs known labels (a truth CSV or the folder names) and a writable
    file: ``ValueError`` / ``InputError`` for a plot that could never be drawn. The runs call it
    first; a caller may call it earlier still, before a model loads."""
    if plot is None:
        return
    if truth_csv is None and not truth_from_folders:
        raise ValueError("--plot needs known labels (--truth CSV or --labels-from-folders)")
    check_output_file(plot)
    check_figure_path(plot)


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
    allow_model_mismatch: bool = False,
) -> dict:
    """Zero-shot classify files (or embedding folders) against ``labels``; metrics with known labels.

    A file that cannot be read is reported and left out (``result["failed"]``, ``{path, reason}``);
    ``InputError`` when none can be read.

    ``top_k`` >= 1; ``plot`` needs known labels (else ``ValueError``). With ``embeddings``, each
    folder's manifest model must be ``model`` (which encodes the labels), else ``ModelMismatch``
    unless ``allow_model_mismatch``.
    """
    from clamp3.evaluate.zeroshot import encode_classes, zero_shot_scores
    from clamp3.evaluate.zeroshot import top_k as best_labels

    _check_top_k(top_k)
    has_truth = truth_csv is not None or truth_from_folders
    check_plot(plot, truth_csv, truth_from_folders)
    if json_out is not None:
        check_output_file(json_out)
    from clamp3.pipeline import as_pipeline

    verdicts = _check_embedding_models(sources, identify(model), allow_model_mismatch) if embeddings else []
    model = as_pipeline(model)  # one tokenizer and audio front-end for the labels and the files
    classes = encode_classes(model, labels, templates, batch_size)
    names = [label.strip() for label in labels]
    items = load_items(sources, model, embeddings, batch_size, show_progress)
    scores = zero_shot_scores(items.vectors, classes)
    records = [
        {"path": path, "label": top[0]["label"], "top": top}
        for path, top in zip(items.paths, best_labels(scores, names, top_k))
    ]
    result = {
        "labels": names,
        "templates": list(templates),
        "predictions": records,
        "failed": items.failed,
        **provenance(),
    }
    if verdicts:
        result["model_check"] = verdicts
    if has_truth:
        source = truth_csv if truth_csv is not None else ", ".join(map(str, sources))
        result["metrics"] = _zero_shot_metrics(
            records, items.paths, scores, names, truth_csv, truth_from_folders, source
        )
        if plot is not None:
            from clamp3.evaluate.confusion import plot_confusion

            plot_confusion(result["metrics"]["confusion"], names, plot, "zero-shot")
    if json_out is not None:
        write_json_atomic(json_out, result)
    return result


def _zero_shot_metrics(
    records: list[dict],
    paths: list[str],
    scores: np.ndarray,
    names: list[str],
    truth_csv: str | os.PathLike | None,
    truth_from_folders: bool,
    source: str | os.PathLike,
) -> dict:
    """Metrics over the items with a known label; adds ``truth`` to their ``records``."""
    from clamp3.evaluate.classmetrics import single_label_metrics

    truth = labels_for(paths, truth_csv, truth_from_folders)
    known = labelled_items(truth, paths, source, "are not counted in the metrics")
    targets, _ = single_label_targets([truth[i] for i in known], names, source, [paths[i] for i in known])
    for i, target in zip(known, targets):
        records[i]["truth"] = names[target]
    known_scores = scores[known]
    return single_label_metrics(targets, known_scores.argmax(axis=1), names, known_scores)


def _check_embedding_models(
    sources: Sequence[str | os.PathLike], label_model: ModelIdentity, allow_mismatch: bool
) -> list[str]:
    """Each embedding folder against the label model and against the first folder.

    Returns one verdict per folder (see ``require_same_model``); a mismatch raises
    ``ModelMismatch`` unless ``allow_mismatch``.
    """
    identities = [load_folder_identity(source) for source in sources]
    verdicts = []
    for source, identity in zip(sources, identities):
        if identity is not None and source != sources[0]:
            require_same_model(
                (f"the embeddings of {sources[0]}", identities[0]),
                (f"those of {source}", identity),
                source,
                allow_mismatch=allow_mismatch,
            )
        verdicts.append(
            require_same_model(
                (f"the embeddings of {source}", identity),
                ("the labels (encoded with --model)", label_model),
                source,
                allow_mismatch=allow_mismatch,
            )
        )
    return verdicts

"""Zero-shot classification: the label whose prompt embedding is nearest (cosine) wins.

Each label is turned into one prompt per template (``"a piece of {label} music"``; labels and
templates may be in any language the text tower knows). With several templates the label's
embedding is the mean of its L2-normalised prompt embeddings, renormalised (prompt
ensembling, as in CLIP), which averages out the wording of any single template.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from clamp3.utils.vectors import l2_normalize

if TYPE_CHECKING:
    from clamp3.model import Clamp3Model
    from clamp3.pipeline import Clamp3Pipeline

DEFAULT_TEMPLATES = ("{label}",)
PLACEHOLDER = "{label}"


def build_prompts(labels: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES) -> list[str]:
    """Prompts in label-major order: ``[t0(l0), t1(l0), ..., t0(l1), ...]`` (C * T strings).

    Raises ``ValueError`` for no labels, repeated or empty labels, no templates, or a template
    without the ``{label}`` placeholder (other braces are kept literally).
    """
    labels = [label.strip() for label in labels]
    if not labels:
        raise ValueError("zero-shot classification needs at least one label")
    if not all(labels):
        empty = [str(i + 1) for i, label in enumerate(labels) if not label]
        raise ValueError(f"label {', '.join(empty)} of {len(labels)} is empty (a stray comma?)")
    if len(set(labels)) != len(labels):
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        raise ValueError(f"labels must be unique, repeated: {repeated}")
    if not templates:
        raise ValueError("give at least one template")
    for template in templates:
        if PLACEHOLDER not in template:
            raise ValueError(f"template {template!r} has no {PLACEHOLDER} placeholder")
    return [template.replace(PLACEHOLDER, label) for label in labels for template in templates]


def ensemble_prompts(prompt_embeddings: np.ndarray, n_labels: int) -> np.ndarray:
    """Prompt embeddings (C * T, D) in :func:`build_prompts` order -> unit class vectors (C, D)."""
    prompts = np.asarray(prompt_embeddings, dtype=np.float32)
    if prompts.ndim != 2 or n_labels < 1 or len(prompts) % n_labels:
        raise ValueError(f"{len(prompts)} prompt embeddings do not split evenly into {n_labels} labels")
    per_label = l2_normalize(prompts).reshape(n_labels, len(prompts) // n_labels, prompts.shape[1])
    return l2_normalize(per_label.mean(axis=1))


def zero_shot_scores(item_embeddings: np.ndarray, class_embeddings: np.ndarray) -> np.ndarray:
    """Cosine similarity of every item (N, D) to every class vector (C, D) -> float32 (N, C) in [-1, 1].

    Works on precomputed embeddings, normalised or not (e.g. an embedding folder's vectors).
    """
    items = np.asarray(item_embeddings, dtype=np.float32)
    classes = np.asarray(class_embeddings, dtype=np.float32)
    if items.ndim != 2 or classes.ndim != 2 or items.shape[1] != classes.shape[1]:
        raise ValueError(f"need (N, D) items and (C, D) classes, got {items.shape} and {classes.shape}")
    return np.clip(l2_normalize(items) @ l2_normalize(classes).T, -1.0, 1.0)


def encode_classes(
    model: Clamp3Model | Clamp3Pipeline,
    labels: Sequence[str],
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    batch_size: int = 32,
) -> np.ndarray:
    """Unit class vectors (C, D): every prompt through the text tower, then ensembled."""
    prompts = build_prompts(labels, templates)
    from clamp3.pipeline import as_pipeline

    # encode_texts: a label such as "score.abc" stays a prompt, never becomes a path.
    embeddings = as_pipeline(model).encode_texts(prompts, batch_size=batch_size, normalize=True)
    return ensemble_prompts(embeddings, len(labels))


def zero_shot_classify(
    model: Clamp3Model | Clamp3Pipeline,
    inputs: Sequence[str],
    labels: Sequence[str],
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    batch_size: int = 32,
    show_progress: bool = False,
) -> tuple[np.ndarray, list[str]]:
    """Classify files (anything ``Clamp3Pipeline.encode_files`` reads) against ``labels``.

    Returns cosine scores (N, C) in [-1, 1] and the label names in column order.
    """
    from clamp3.pipeline import as_pipeline

    pipeline = as_pipeline(model)
    classes = encode_classes(pipeline, labels, templates, batch_size)
    items = pipeline.encode_files(list(inputs), batch_size=batch_size, show_progress=show_progress)
    return zero_shot_scores(items, classes), [label.strip() for label in labels]


def top_k(scores: np.ndarray, labels: Sequence[str], k: int) -> list[list[dict]]:
    """Per item the ``k`` (>= 1, else ``ValueError``) best labels, best first:
    ``[{"label", "score"}, ...]`` (ties: label order)."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [[{"label": labels[c], "score": float(row[c])} for c in idx] for row, idx in zip(scores, order)]

"""Classification metrics shared by the linear probe and zero-shot classification.

Thin wrappers over scikit-learn (its implementations of F1 and average precision are the
reference the literature reports) that return plain JSON-ready dicts keyed by label name.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def single_label_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, names: Sequence[str], scores: np.ndarray | None = None
) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix.

    ``y_true``, ``y_pred``: int class indices (N,) into ``names``. Macro-F1 averages over the
    classes that occur in ``y_true`` or ``y_pred`` (a class nobody has and nobody predicts is
    not counted as a zero). ``confusion[i][j]`` counts items of class ``i`` predicted as ``j``
    over all of ``names``. With ``scores`` (N, C), top-3 and top-5 accuracy are added when C
    is larger than k.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    present = np.union1d(y_true, y_pred)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=np.arange(len(names)), zero_division=0
    )
    out = {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(names)
        },
        "labels": list(names),
        "confusion": confusion_matrix(y_true, y_pred, labels=np.arange(len(names))).tolist(),
    }
    if scores is not None:
        ranks = np.argsort(-np.asarray(scores), axis=1, kind="stable")
        for k in (3, 5):
            if scores.shape[1] > k:
                out[f"top{k}_accuracy"] = float(np.mean((ranks[:, :k] == y_true[:, None]).any(axis=1)))
    return out


def multi_label_metrics(
    y_true: np.ndarray, probabilities: np.ndarray, y_pred: np.ndarray, names: Sequence[str]
) -> dict:
    """Micro/macro F1 of thresholded predictions and mAP of the scores, for tagging.

    ``y_true``, ``y_pred``: bool (N, C); ``probabilities``: (N, C) in [0, 1]. Macro averages
    (F1 and AP) run over the labels with at least one positive item, since AP is undefined
    without positives.
    """
    from sklearn.metrics import average_precision_score, f1_score, precision_recall_fscore_support

    y_true = np.asarray(y_true, dtype=bool)
    y_pred = np.asarray(y_pred, dtype=bool)
    has_pos = y_true.any(axis=0)
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, zero_division=0)
    ap = np.full(len(names), np.nan)
    for c in np.flatnonzero(has_pos):
        ap[c] = average_precision_score(y_true[:, c], probabilities[:, c])
    return {
        "n": int(len(y_true)),
        "micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
        "macro_f1": float(np.mean(f1[has_pos])) if has_pos.any() else 0.0,
        "mAP": float(np.nanmean(ap)) if has_pos.any() else 0.0,
        "subset_accuracy": float(np.mean((y_true == y_pred).all(axis=1))),
        "per_label": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "ap": None if np.isnan(ap[i]) else float(ap[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(names)
        },
        "labels": list(names),
    }

"""Retrieval plots (optional: needs matplotlib, which clamp3 does not install)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from clamp3.utils.plotting import pyplot, save_figure

if TYPE_CHECKING:
    from clamp3.evaluate.score import RetrievalEvaluation


def plot_retrieval(result: RetrievalEvaluation, path: str | os.PathLike, title: str = "retrieval") -> Path:
    """Save a two-panel figure: Hit@k for k = 1..n_references (log k) under the evaluation's
    tie mode, and a histogram of the reported ranks; the title gives its MRR.

    The format follows ``path``'s suffix (png, pdf, svg). Raises ``ImportError`` with an install
    hint when matplotlib is missing.
    """
    plt = pyplot()
    ranks = np.asarray(result.ranks, dtype=np.float64)
    n_references = result.n_references
    ks = np.arange(1, max(n_references, 1) + 1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(ks, result.hit_curve(len(ks)), color="tab:blue")
    left.set_xscale("log")
    left.set_xlabel("k")
    left.set_ylabel("Hit@k")
    left.set_ylim(0, 1.02)
    left.grid(True, which="both", alpha=0.3)
    left.set_title(f"{title}: Hit@k ({len(ranks)} queries)")
    bins = np.unique(np.geomspace(1, max(n_references, 2), num=30).round())
    right.hist(ranks, bins=bins, color="tab:orange")
    right.set_xscale("log")
    right.set_xlabel("rank of the correct reference")
    right.set_ylabel("queries")
    right.set_title(f"MRR {result.metrics['mrr']:.4f}")
    fig.tight_layout()
    return save_figure(fig, path)

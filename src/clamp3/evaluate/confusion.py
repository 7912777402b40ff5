"""Confusion-matrix plot (PNG) for the probe and zero-shot reports."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence

import numpy as np

from clamp3.utils.plotting import pyplot, save_figure

log = logging.getLogger(__name__)

# Labels may be in any language: fonts tried after DejaVu Sans for glyphs it lacks, when installed.
FALLBACK_FONTS = (
    "Noto Sans CJK JP",
    "Noto Sans CJK SC",
    "Noto Sans",
    "WenQuanYi Zen Hei",
    "Droid Sans Fallback",
    "Arial Unicode MS",
)


def _font_families() -> list[str]:
    from matplotlib import font_manager

    installed = {font.name for font in font_manager.fontManager.ttflist}
    return ["DejaVu Sans", *(name for name in FALLBACK_FONTS if name in installed)]


def plot_confusion(
    confusion: Sequence[Sequence[int]] | np.ndarray,
    names: Sequence[str],
    path: str | os.PathLike,
    title: str = "",
) -> None:
    """Write a confusion matrix (rows = true class, columns = predicted) as a PNG, atomically.

    Colours are row-normalised (recall per class) so rare classes stay readable; cells carry
    the raw counts while the matrix is small enough to print them.
    """
    plt = pyplot()
    counts = np.asarray(confusion, dtype=np.int64)
    rows = counts.sum(axis=1, keepdims=True)
    rates = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=float), where=rows > 0)
    with plt.rc_context({"font.family": _font_families()}), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _draw(plt, counts, rates, list(names), path, title)
    if any("missing from font" in str(w.message) for w in caught):
        log.info(
            "%s: some label characters have no glyph in the installed fonts (install Noto Sans CJK)", path
        )


def _draw(plt, counts: np.ndarray, rates: np.ndarray, names: list[str], path, title: str) -> None:
    size = min(4.0 + 0.45 * len(names), 30.0)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    try:
        image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
        ticks = np.arange(len(names))
        ax.set_xticks(ticks, labels=names, rotation=60, ha="right")
        ax.set_yticks(ticks, labels=names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if title:
            ax.set_title(title)
        if len(names) <= 30:
            for i, j in np.ndindex(counts.shape):
                colour = "white" if rates[i, j] > 0.5 else "black"
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", color=colour, fontsize=8)
        fig.tight_layout()
        save_figure(fig, path)
    finally:
        plt.close(fig)  # when drawing failed (save_figure closes what it writes)

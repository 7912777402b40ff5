"""The one matplotlib set-up for every figure clamp3 writes (retrieval curves, confusion
matrices, benchmark bars). matplotlib is optional (clamp3 does not install it): a missing one is
an ``ImportError`` whose message says what to install, which the CLI turns into one line.

Figures are files only: the Agg back-end never opens a window and works without a display, and
a figure is written atomically (a reader never sees half a PNG) and closed, so a long run that
plots many times does not keep them in memory.
"""

from __future__ import annotations

import os
from pathlib import Path

from clamp3.utils.io import atomic_path


def pyplot():
    """``matplotlib.pyplot`` on the file-only Agg back-end; ``ImportError`` with an install hint."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("plots need matplotlib: pip install matplotlib") from exc
    return plt


def check_figure_path(path: str | os.PathLike) -> None:
    """Refuse a figure file whose suffix matplotlib cannot write (``ValueError`` naming it and
    the formats it can), before the work that would draw it; ``ImportError`` without matplotlib."""
    pyplot()
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    suffix = Path(path).suffix.lstrip(".").lower() or "png"
    formats = FigureCanvasAgg.get_supported_filetypes()
    if suffix not in formats:
        raise ValueError(f"{path}: cannot draw a .{suffix} figure; use one of {', '.join(sorted(formats))}")


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Write ``fig`` atomically in the format of ``path``'s suffix (png when it has none) and
    close it, also when writing fails; returns the path."""
    target = Path(path)
    try:
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=target.suffix.lstrip(".") or "png", dpi=dpi)
    finally:
        pyplot().close(fig)
    return target

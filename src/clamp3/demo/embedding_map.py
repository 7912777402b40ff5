"""A picture of the shared space: every test piece's text, sheet, MIDI and audio vectors on one
plane (``OUT/map-<model>.png`` of ``clamp3 benchmark demo``).

The plane is the first two principal components of all plotted vectors together (after L2
normalisation, as retrieval compares them), so it is deterministic and shows distances as they
are, with no tuning knob: colour is the piece's collection, the marker its kind, and a grey
line joins each English text to its own score. A model that learned the shared space puts the
four kinds of one collection together and draws short lines; one that did not scatters them
or keeps each kind apart (a modality gap). Two dimensions of a 128- or 768-dimensional space
show only part of it: the benchmark table, not the picture, is the measurement.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clamp3.utils.vectors import l2_normalize

# kind -> marker; the text kind is the benchmark's first language (``text_<lang>``)
MARKERS = {"sheet": "o", "midi": "s", "audio": "^", "text": "*"}


def principal_plane(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates (N, 2) of ``vectors`` (N, D) on their first two principal components, and
    the share of the total variance each component explains (2,).

    Each component's sign is fixed so that its largest-magnitude loading is positive: the
    same set of vectors in any row order gives every vector the same coordinates.
    """
    centred = vectors - vectors.mean(axis=0, keepdims=True)
    _, singular, components = np.linalg.svd(centred, full_matrices=False)
    components = components[:2]
    strongest = np.abs(components).argmax(axis=1)
    components = components * np.sign(components[np.arange(len(components)), strongest])[:, None]
    total = float((singular**2).sum()) or 1.0
    return centred @ components.T, (singular[:2] ** 2) / total


def plot_embedding_map(
    vectors: dict[str, dict[str, np.ndarray]],
    collections: dict[str, str],
    path: str | Path,
    *,
    text_kind: str,
    title: str,
) -> Path | None:
    """Write the map of ``vectors`` (kind -> piece id -> (D,) vector; the kinds ``sheet``,
    ``midi``, ``audio`` and ``text_kind`` are drawn) for the pieces that have every drawn kind.
    ``collections``: piece id -> collection (colour; pieces without one are grey). Returns
    ``path``, or None (nothing written) when fewer than two pieces have every kind: a plane
    through one point says nothing. ``ImportError`` without matplotlib."""
    from clamp3.utils.plotting import pyplot, save_figure

    kinds = [k for k in ("sheet", "midi", "audio", text_kind) if k in vectors]
    ids = sorted(set.intersection(*(set(vectors[k]) for k in kinds)))
    if len(ids) < 2:
        return None
    stacked = l2_normalize(np.stack([vectors[k][i] for k in kinds for i in ids]), dtype=np.float64)
    points, explained = principal_plane(stacked)
    where = {(k, i): points[n * len(ids) + m] for n, k in enumerate(kinds) for m, i in enumerate(ids)}
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 7))
    if text_kind in kinds and "sheet" in kinds:
        for i in ids:
            (x0, y0), (x1, y1) = where[text_kind, i], where["sheet", i]
            ax.plot([x0, x1], [y0, y1], color="0.8", linewidth=0.7, zorder=1)
    names = sorted({collections.get(i, "") for i in ids})
    palette = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    colour = {name: (palette(n % palette.N) if name else "0.5") for n, name in enumerate(names)}
    for kind in kinds:
        marker = MARKERS["text" if kind == text_kind else kind]
        xy = np.stack([where[kind, i] for i in ids])
        ax.scatter(
            xy[:, 0], xy[:, 1], marker=marker, s=70 if kind == text_kind else 34, zorder=2,
            c=[colour[collections.get(i, "")] for i in ids], alpha=0.85, linewidths=0,
        )  # fmt: skip
    _legends(ax, names, colour, kinds, text_kind)
    ax.set_xlabel(f"first principal component ({explained[0]:.0%} of the variance)")
    ax.set_ylabel(f"second ({explained[1]:.0%})")
    ax.set_title(f"{title} ({len(ids)} pieces)", fontsize="medium")  # the pieces drawn, not those given
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)


def _legends(ax, names: list[str], colour: dict, kinds: list[str], text_kind: str) -> None:
    """One legend for the collections (colour), one for the kinds (marker, in grey)."""
    from matplotlib.lines import Line2D

    def handle(marker: str, face) -> Line2D:
        return Line2D(
            [], [], marker=marker, linestyle="", markerfacecolor=face, markeredgewidth=0, markersize=8
        )

    first = ax.legend(
        [handle("o", colour[n]) for n in names], [n or "(none)" for n in names],
        title="collection", fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0),
    )  # fmt: skip
    ax.add_artist(first)
    labels = [_kind_name(k) + (" (grey line: to its score)" if k == text_kind else "") for k in kinds]
    markers = [MARKERS["text" if k == text_kind else k] for k in kinds]
    ax.legend(
        [handle(m, "0.45") for m in markers], labels, title="kind", fontsize="small",
        loc="lower left", bbox_to_anchor=(1.01, 0.0),
    )  # fmt: skip


def _kind_name(kind: str) -> str:
    """``text_en`` -> ``text (en)``, ``midi`` -> ``MIDI``: the names of the benchmark table."""
    if kind.startswith("text_"):
        return f"text ({kind[5:]})"
    return "MIDI" if kind == "midi" else kind

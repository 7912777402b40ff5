"""The demo benchmark's pictures: the embedding map (``clamp3.demo.embedding_map``) and the
collection-only line of ``benchmark.png``."""

from __future__ import annotations

import numpy as np
import pytest

import clamp3.utils.plotting as plotting
from clamp3.demo.benchmark import directions, random_baseline
from clamp3.demo.embedding_map import plot_embedding_map, principal_plane

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def drawn(monkeypatch) -> list:
    """The figures ``save_figure`` writes (still written), to look inside them."""
    figures = []
    save = plotting.save_figure
    monkeypatch.setattr(
        plotting, "save_figure", lambda fig, path, dpi: figures.append(fig) or save(fig, path, dpi)
    )
    return figures


def test_the_plane_holds_the_spread_in_order_and_ignores_row_order():
    rng = np.random.default_rng(0)
    # most spread along one random direction, less along a second, little elsewhere
    axes = np.linalg.qr(rng.standard_normal((16, 16)))[0]
    x = rng.standard_normal((60, 3)) * np.array([5.0, 2.0, 0.1])
    vectors = x @ axes[:3]
    points, explained = principal_plane(vectors)
    assert points.shape == (60, 2)
    assert np.allclose(points.mean(axis=0), 0, atol=1e-9)
    assert points[:, 0].var() > points[:, 1].var() > 0
    assert explained[0] > explained[1] and explained.sum() <= 1 + 1e-12
    assert explained.sum() > 0.99  # the third direction holds almost nothing
    order = rng.permutation(60)
    shuffled, _ = principal_plane(vectors[order])
    # signs are fixed by the loadings, not by the rows: every vector keeps its coordinates
    assert np.allclose(shuffled, points[order], atol=1e-9)


def test_points_on_a_line_have_no_second_coordinate():
    direction = np.array([1.0, 2.0, -2.0]) / 3
    points, explained = principal_plane(np.outer(np.arange(5.0), direction))
    assert np.allclose(points[:, 1], 0, atol=1e-9)
    assert explained[0] == pytest.approx(1.0)
    assert np.allclose(np.abs(np.diff(points[:, 0])), 1.0)  # distances along the line are kept


def _vectors(ids, rng, kinds=("sheet", "midi", "audio", "text_en")):
    return {kind: {i: rng.standard_normal(8).astype(np.float32) for i in ids} for kind in kinds}


def test_the_map_is_a_png_of_the_pieces_that_have_every_kind(tmp_path, drawn):
    rng = np.random.default_rng(1)
    vectors = _vectors(["a", "b", "c", "d"], rng)
    del vectors["audio"]["d"]  # one piece lacks a recording: it is left out, the map still drawn
    collections = {"a": "bach", "b": "bach", "d": "essen"}  # "c" has none: drawn grey
    path = plot_embedding_map(vectors, collections, tmp_path / "map.png", text_kind="text_en", title="t")
    assert path == tmp_path / "map.png" and path.read_bytes()[:8] == PNG
    ax = drawn[0].axes[0]
    assert [len(c.get_offsets()) for c in ax.collections] == [3, 3, 3, 3]  # 4 kinds x 3 pieces
    assert len(ax.lines) == 3  # one text-to-score line per piece
    assert "variance" in ax.get_xlabel() and ax.get_title() == "t (3 pieces)"
    legends = [child for child in ax.get_children() if child.__class__.__name__ == "Legend"]
    names = {text.get_text() for legend in legends for text in legend.get_texts()}
    # "essen" only had the piece without a recording, so it is not in the legend
    assert {"bach", "(none)", "sheet", "MIDI", "audio"} <= names and "essen" not in names


def test_a_map_of_one_piece_is_not_drawn(tmp_path):
    vectors = _vectors(["only"], np.random.default_rng(2))
    assert plot_embedding_map(vectors, {}, tmp_path / "map.png", text_kind="text_en", title="t") is None
    assert not (tmp_path / "map.png").exists()


def _entry(label: str, mrr: float, reference: float | None) -> dict:
    rows = []
    for d in directions(("en",)):
        rows.append({"direction": d.label, "mrr": mrr, "hit@1": mrr / 2, "hit@10": min(1.0, 2 * mrr),
                     "random": random_baseline(10)})  # fmt: skip
    ref = None if reference is None else {"mrr": reference, "hit@1": reference / 2, "hit@10": 0.9}
    return {"model": label, "rows": rows, "collection_reference": ref}


def test_benchmark_bars_draw_the_collection_only_line_where_the_corpus_has_one(tmp_path, drawn):
    from clamp3.demo.report import plot_benchmark

    plot_benchmark({"a": _entry("a", 0.5, 0.44), "b": _entry("b", 0.3, None)}, tmp_path / "p.png")
    mrr_axis, hit_axis = drawn[0].axes[:2]
    dashed = [line for line in mrr_axis.lines if line.get_linestyle() == "--"]
    assert [line.get_xdata()[0] for line in dashed] == [0.44]  # model b has no reference
    assert [line.get_xdata()[0] for line in hit_axis.lines if line.get_linestyle() == "--"] == [0.9]
    assert "collection-only" in mrr_axis.get_title()

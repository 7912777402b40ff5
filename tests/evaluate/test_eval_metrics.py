"""Pure retrieval metrics against a naive Python reference, with planted ties."""

from __future__ import annotations

import numpy as np
import pytest

from clamp3.evaluate import metrics


def naive_rank(scores: list[float], correct: int, ties: str) -> float:
    """Rank of ``correct`` in plain Python: optimistic = the official sort by (score, is_correct)."""
    if ties == "optimistic":
        order = sorted(range(len(scores)), key=lambda j: (scores[j], j == correct), reverse=True)
        return float(order.index(correct) + 1)
    greater = sum(1 for s in scores if s > scores[correct])
    tied = sum(1 for j, s in enumerate(scores) if s == scores[correct] and j != correct)
    return 1.0 + greater + tied / 2.0


def naive_metrics(ranks: list[float], ks=(1, 10, 100)) -> dict[str, float]:
    out = {"mrr": sum(1.0 / r for r in ranks) / len(ranks)}
    for k in ks:
        out[f"hit@{k}"] = sum(1 for r in ranks if r <= k) / len(ranks)
    return out


@pytest.mark.parametrize("ties", ["expected", "optimistic"])
def test_ranks_and_metrics_equal_naive_reference_with_ties(rng, ties):
    # Small integer similarities: many exact ties, including with the correct item.
    sim = rng.integers(0, 6, size=(80, 150)).astype(np.float64)
    correct = rng.integers(0, 150, size=80)
    got = metrics.ranks(sim, correct, ties=ties)
    want = [naive_rank(sim[q].tolist(), int(correct[q]), ties) for q in range(80)]
    np.testing.assert_array_equal(got, want)
    assert metrics.retrieval_metrics(got) == pytest.approx(naive_metrics(want), abs=1e-12)
    assert (got != np.round(got)).any() if ties == "expected" else (got == np.round(got)).all()


def test_tie_modes_agree_without_ties(rng):
    sim = rng.standard_normal((30, 40))
    correct = rng.integers(0, 40, size=30)
    np.testing.assert_array_equal(
        metrics.ranks(sim, correct, "expected"), metrics.ranks(sim, correct, "optimistic")
    )


def test_expected_rank_of_a_full_tie_is_the_middle():
    sim = np.zeros((1, 5))
    assert metrics.ranks(sim, [2], "expected")[0] == 3.0  # uniform over positions 1..5
    assert metrics.ranks(sim, [2], "optimistic")[0] == 1.0


def test_cosine_similarity_is_exact_for_duplicate_references(rng):
    refs = rng.standard_normal((300, 64)).astype(np.float32)
    refs[200:] = refs[:100]  # duplicates land in other BLAS blocks of the product
    refs[150] = refs[3] * 7.0  # a scaled copy is the same direction
    queries = rng.standard_normal((17, 64)).astype(np.float32)
    sim = metrics.cosine_similarity(queries, refs)
    assert sim.dtype == np.float64 and sim.shape == (17, 300)
    np.testing.assert_array_equal(sim[:, 200:], sim[:, :100])
    naive = np.array(
        [[float(np.dot(q, r) / np.linalg.norm(q) / np.linalg.norm(r)) for r in refs] for q in queries]
    )
    np.testing.assert_allclose(sim, naive, atol=1e-6)


def test_hit_curve_and_bad_input():
    ranks = np.array([1.0, 1.5, 3.0, 10.0])
    np.testing.assert_allclose(metrics.hit_curve(ranks, 4), [0.25, 0.5, 0.75, 0.75])
    with pytest.raises(ValueError, match="unknown tie mode"):
        metrics.ranks(np.zeros((1, 2)), [0], ties="pessimistic")
    with pytest.raises(ValueError, match=r"\[0, R\)"):
        metrics.ranks(np.zeros((1, 2)), [2])


@pytest.mark.parametrize("ties", metrics.TIE_MODES)
def test_a_nan_similarity_is_refused_not_scored_as_a_hit(ties):
    """NaN compares as neither greater nor equal: counted, it made a broken query a perfect hit."""
    with pytest.raises(ValueError, match=r"NaN similarity in 1 query row\(s\) \(1\)"):
        metrics.ranks(np.array([[0.9, 0.1, 0.2], [np.nan, 0.5, 0.9]]), [0, 0], ties=ties)
    queries, references = np.array([[np.nan, 0.0, 0.0]]), np.eye(3)
    with pytest.raises(ValueError, match="NaN similarity"):
        metrics.rank_counts_chunked(queries, references, [0])


def naive_expected(scores: list[float], correct: int, ks=(1, 10, 100)) -> dict[str, float]:
    """E[1/rank] and P(rank <= k) by listing every position the correct item takes when its
    ties are shuffled (all equally likely)."""
    greater = sum(1 for s in scores if s > scores[correct])
    tied = sum(1 for j, s in enumerate(scores) if s == scores[correct] and j != correct)
    positions = range(greater + 1, greater + tied + 2)
    out = {"mrr": sum(1 / p for p in positions) / len(positions)}
    out.update({f"hit@{k}": sum(p <= k for p in positions) / len(positions) for k in ks})
    return out


def test_expected_metrics_of_a_hand_made_tie():
    # Query 0: the correct reference ties with one other at the top (positions 1 or 2).
    # Query 1: one reference above, then a three-way tie (positions 2, 3 or 4).
    sim = np.array([[0.9, 0.9, 0.1, 0.0], [0.5, 0.8, 0.5, 0.5]])
    greater, tied = metrics.rank_counts(sim, [0, 2])
    assert greater.tolist() == [0, 1] and tied.tolist() == [1, 2]
    got = metrics.metrics_from_counts(greater, tied, "expected", ks=(1, 2, 3))
    assert got["hit@1"] == pytest.approx((0.5 + 0.0) / 2)
    assert got["hit@2"] == pytest.approx((1.0 + 1 / 3) / 2)
    assert got["hit@3"] == pytest.approx((1.0 + 2 / 3) / 2)
    assert got["mrr"] == pytest.approx(((1 + 1 / 2) / 2 + (1 / 2 + 1 / 3 + 1 / 4) / 3) / 2)
    optimistic = metrics.metrics_from_counts(greater, tied, "optimistic", ks=(1, 2, 3))
    assert optimistic == pytest.approx({"mrr": (1 + 1 / 2) / 2, "hit@1": 0.5, "hit@2": 1.0, "hit@3": 1.0})
    # Breaking query 0's tie at random puts the correct reference first half of the time.
    rng = np.random.default_rng(0)
    hits = [np.argsort(-sim[0] - 1e-9 * rng.random(4))[0] == 0 for _ in range(4000)]
    first = metrics.metrics_from_counts(greater[:1], tied[:1], "expected", ks=(1,))
    assert np.mean(hits) == pytest.approx(first["hit@1"], abs=0.03) and first["hit@1"] == 0.5


def test_expected_metrics_equal_naive_reference_with_many_ties(rng):
    sim = rng.integers(0, 6, size=(80, 150)).astype(np.float64)
    correct = rng.integers(0, 150, size=80)
    greater, tied = metrics.rank_counts(sim, correct)
    got = metrics.metrics_from_counts(greater, tied, "expected")
    per_query = [naive_expected(sim[q].tolist(), int(correct[q])) for q in range(80)]
    want = {name: sum(m[name] for m in per_query) / 80 for name in per_query[0]}
    assert got == pytest.approx(want, abs=1e-12)
    curve = metrics.hit_curve_from_counts(greater, tied, 150)
    for k in (1, 10, 100):
        assert curve[k - 1] == pytest.approx(want[f"hit@{k}"], abs=1e-12)
    assert (np.diff(curve) >= -1e-12).all() and curve[-1] == pytest.approx(1.0)
    optimistic = metrics.hit_curve_from_counts(greater, tied, 150, "optimistic")
    np.testing.assert_allclose(optimistic, metrics.hit_curve(1.0 + greater, 150))

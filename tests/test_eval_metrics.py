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

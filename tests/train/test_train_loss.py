"""The contrastive loss and its distributed gather."""

from __future__ import annotations

import math

import pytest
import torch

from clamp3.train.loss import InfoNCELoss


def _reference(t: torch.Tensor, m: torch.Tensor, scale: float) -> float:
    """Symmetric InfoNCE written out element by element."""
    n = t.shape[0]
    logits = [[scale * float(t[i] @ m[j]) for j in range(n)] for i in range(n)]
    rows = sum(-logits[i][i] + math.log(sum(math.exp(x) for x in logits[i])) for i in range(n)) / n
    cols = sum(-logits[j][j] + math.log(sum(math.exp(logits[i][j]) for i in range(n))) for j in range(n)) / n
    return 0.5 * (rows + cols)


def test_default_is_the_official_unnormalised_scale_one():
    gen = torch.Generator().manual_seed(0)
    t, m = torch.randn(5, 8, generator=gen), torch.randn(5, 8, generator=gen)
    out = InfoNCELoss()(t, m)
    assert out["loss"].item() == pytest.approx(_reference(t, m, 1.0), rel=1e-5)


def test_normalised_and_scaled_variant():
    gen = torch.Generator().manual_seed(1)
    t, m = torch.randn(4, 6, generator=gen), torch.randn(4, 6, generator=gen)
    out = InfoNCELoss(logit_scale=10.0, normalize=True)(t, m)
    tn, mn = t / t.norm(dim=1, keepdim=True), m / m.norm(dim=1, keepdim=True)
    assert out["loss"].item() == pytest.approx(_reference(tn, mn, 10.0), rel=1e-5)


def test_aligned_pairs_give_low_loss_and_full_accuracy():
    t = torch.eye(6) * 10
    out = InfoNCELoss()(t, t.clone())
    assert out["accuracy"].item() == 1.0 and out["loss"].item() < 1e-3
    shuffled = InfoNCELoss()(t, t[[1, 2, 3, 4, 5, 0]])
    assert shuffled["accuracy"].item() == 0.0 and shuffled["loss"].item() > 5

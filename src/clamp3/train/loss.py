"""Symmetric InfoNCE over the global batch (the official ``ClipLoss``, §2.4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from clamp3.train.distributed import gather_features


class InfoNCELoss(nn.Module):
    """Mean of text->music and music->text cross-entropy over ``logit_scale * t @ m.T``.

    Features of every rank are gathered (with gradients) first, so each row sees the whole
    global batch as negatives; pair i of the global batch is row i on both sides. Defaults are
    the official training setting: scale 1 (temperature 1) on *unnormalised* projected
    features. ``normalize=True`` gives the usual CLIP cosine form.
    """

    def __init__(self, logit_scale: float = 1.0, normalize: bool = False):
        super().__init__()
        self.logit_scale = float(logit_scale)
        self.normalize = normalize

    def forward(self, text_features: torch.Tensor, music_features: torch.Tensor) -> dict[str, torch.Tensor]:
        """text_features, music_features: (B_local, D), any float dtype.

        Returns ``loss`` (scalar fp32, the same on every rank, differentiable) and
        ``accuracy`` (fraction of text rows whose best music column is their pair, no grad).
        """
        text = gather_features(text_features.float())
        music = gather_features(music_features.float())
        if self.normalize:
            text, music = F.normalize(text, dim=-1), F.normalize(music, dim=-1)
        logits = self.logit_scale * text @ music.t()
        labels = torch.arange(logits.shape[0], device=logits.device)
        loss = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))
        accuracy = (logits.detach().argmax(dim=1) == labels).float().mean()
        return {"loss": loss, "accuracy": accuracy}

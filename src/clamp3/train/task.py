"""The contrastive task and the freezing rules shared by every stage."""

from __future__ import annotations

import torch
from torch import nn

from clamp3.towers.packed import packed_encoder_of
from clamp3.train.data import PairBatch
from clamp3.train.loss import InfoNCELoss

# Tables that exist in the official state dict but are never read: the BERTs behind the
# symbolic and audio towers get ``inputs_embeds``, so their 1-row word-embedding tables get
# no gradient. Keeping them out of training leaves them bit-identical and lets DDP run
# without ``find_unused_parameters``.
NEVER_USED = ("symbolic_model.base.embeddings.word_embeddings.", "audio_model.embeddings.word_embeddings.")


class ContrastiveTask(nn.Module):
    """Text–``modality`` alignment: the model's two features -> global InfoNCE.

    ``forward`` returns ``loss`` (scalar, identical on every rank) and ``accuracy``; with
    ``rows`` only the batch's first ``rows`` items take part (evaluation gives a rank with no
    item of a short batch a placeholder item and ``rows=0``). ``packed``: both towers run on
    the batch's real tokens only (:meth:`Clamp3Model.packed_features`), the same features to
    float rounding with fewer FLOPs when lengths vary; else the transformers forward on the
    padded batch, as the official code runs it.
    """

    def __init__(self, model: nn.Module, modality: str, loss: InfoNCELoss, packed: bool = False):
        super().__init__()
        self.model = model
        self.modality = modality
        self.loss = loss
        self.packed = packed
        if packed:
            for tower in ("text", modality):  # fail at the start, not at the first step
                model.require(tower)
                packed_encoder_of(getattr(model, f"{tower}_model"))

    def forward(self, batch: PairBatch, rows: int | None = None) -> dict[str, torch.Tensor]:
        if self.packed:
            text = self.model.packed_features("text", batch.text_ids, batch.text_mask)
            music = self.model.packed_features(self.modality, batch.music, batch.music_mask)
        else:
            out = self.model(batch.text_ids, batch.text_mask, batch.music, batch.music_mask, self.modality)
            text, music = out.text_features, out.music_features
        return self.loss(text[:rows], music[:rows])


def freeze(model: nn.Module, trainable: list[str]) -> list[str]:
    """Set ``requires_grad`` so only the towers in ``trainable`` (with their projections) learn.

    Returns the names of the trainable parameters, sorted (the optimizer's order, so a
    resumed optimizer state lines up whatever order the towers were built in).
    """
    prefixes = tuple(f"{m}_{part}." for m in trainable for part in ("model", "proj"))
    names = []
    for name, param in model.named_parameters():
        learn = name.startswith(prefixes) and not name.startswith(NEVER_USED)
        param.requires_grad_(learn)
        if learn:
            names.append(name)
    return sorted(names)


def set_train_mode(task: nn.Module, trainable: list[str]) -> None:
    """``task.train()``, but the frozen towers of ``task.model`` stay in eval mode.

    The official calls ``model.train()`` every epoch, which turns dropout back on in the frozen
    towers too. A frozen tower then produces randomly perturbed features that the learning
    tower chases, and the targets it should align to are not the features it gives at
    inference. In eval mode a frozen tower is the fixed function it is meant to be (and its
    weights are untouched either way).
    """
    task.train()
    for name, child in task.model.named_children():
        if name.endswith(("_model", "_proj")) and name.rsplit("_", 1)[0] not in trainable:
            child.eval()

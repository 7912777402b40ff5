"""The exported computation of one tower: inputs + boolean mask -> projected pooled features.

Each graph holds the whole per-segment computation of the torch path
(:meth:`clamp3.model.Clamp3Model.get_features`): the encoder, the masked mean over the real
positions and the projection, and also returns the last hidden state (what ``pooled=False``
gives). Segmentation and the length-weighted segment mean stay outside the graph, in
:mod:`clamp3.segments`, shared with the torch path.

Attention masking is boolean end to end. transformers' eager path turns the mask into an
additive bias filled with the dtype's minimum, and the ONNX decomposition of SDPA does the same
with the float32 minimum; in float16 either becomes ``-inf`` or overflows, and ``0 * -inf``
turns every embedding into NaN. Here the tower's attention is swapped, for the export only, for
one that selects scores with ``Where(mask, scores, -inf)``: real positions keep their exact
scores and padded keys get exactly zero weight in every precision (a row always has at least
one real key, its own segment's first element).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from clamp3.model import Clamp3Model
from clamp3.preprocess.patches import PATCH_SIZE

ATTENTION_NAME = "clamp3_boolean"


def _boolean_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Scaled dot-product attention with a boolean (B, 1, Lq, Lk) mask, True = attend.

    query/key/value (B, heads, L, head_dim) -> ((B, L, heads, head_dim), None), the layout
    transformers' attention functions return.
    """
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)) * scale
    if attention_mask is not None:
        scores = torch.where(attention_mask, scores, torch.full_like(scores[..., :1, :1], float("-inf")))
    weights = torch.softmax(scores, dim=-1)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), None


def _register_attention() -> None:
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
    from transformers.modeling_utils import AttentionInterface

    AttentionInterface.register(ATTENTION_NAME, _boolean_attention)
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)  # the 4-D boolean mask


@contextlib.contextmanager
def boolean_attention(tower: nn.Module) -> Iterator[None]:
    """Inside this block every transformers config under ``tower`` uses :func:`_boolean_attention`."""
    _register_attention()
    configs = [
        m.config
        for m in tower.modules()
        if hasattr(m, "config") and hasattr(m.config, "_attn_implementation")
    ]
    saved = [c._attn_implementation for c in configs]
    try:
        for c in configs:
            c._attn_implementation = ATTENTION_NAME
        yield
    finally:
        for c, value in zip(configs, saved):
            c._attn_implementation = value


class TowerGraph(nn.Module):
    """One tower of a loaded model as an exportable module.

    ``forward(inputs, attention_mask)``: inputs (B, L) int64 token ids, (B, L, 64) int64 patch
    ids or (B, L, F) float32 feature rows; attention_mask (B, L) bool, True on real positions.
    Returns (embedding (B, D) float32: masked mean of the last hidden state, projected;
    hidden_states (B, L, H)).
    """

    def __init__(self, model: Clamp3Model, modality: str):
        super().__init__()
        model.require(modality)
        self.modality = modality
        self.tower = getattr(model, f"{modality}_model")
        self.proj = getattr(model, f"{modality}_proj")

    def _hidden(self, inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.modality == "text":
            return self.tower(input_ids=inputs, attention_mask=mask).last_hidden_state
        if self.modality == "audio":
            return self.tower(inputs_embeds=inputs, attention_mask=mask).last_hidden_state
        # The official one-hot product (torch uses embedding_bag, which ONNX lacks; same numbers):
        # (B, L, 64) ids -> (B, L, 64 * 128) one-hot -> Linear(8192, H).
        embedding = self.tower.patch_embedding
        classes = torch.arange(self.tower.num_classes, device=inputs.device)
        one_hot = (inputs.unsqueeze(-1) == classes).to(embedding.weight.dtype)
        embeds = embedding(one_hot.flatten(2))
        return self.tower.base(inputs_embeds=embeds, attention_mask=mask).last_hidden_state

    def forward(
        self, inputs: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self._hidden(inputs, attention_mask)
        weights = attention_mask.to(hidden.dtype).unsqueeze(-1)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        return self.proj(pooled), hidden


def sample_batch(
    model: Clamp3Model, modality: str, lengths: list[int], seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A fixed right-padded batch for export and verification: inputs and a (B, L) bool mask.

    Texts are ``<s>`` + random ids + ``</s>`` padded with the pad id; patches random ids in
    [0, 128); audio rows N(0, 1). Same seed, same arrays.
    """
    rng = np.random.default_rng(seed)
    cfg = model.config.tower(modality)
    longest = max(lengths)
    mask = np.zeros((len(lengths), longest), dtype=bool)
    for i, n in enumerate(lengths):
        mask[i, :n] = True
    if modality == "text":
        ids = rng.integers(3, cfg.vocab_size, size=(len(lengths), longest), dtype=np.int64)
        ids[:, 0] = 0  # <s>, the XLM-R ids every text tower uses (TextTowerConfig)
        for i, n in enumerate(lengths):
            ids[i, n - 1] = 2  # </s>
        ids[~mask] = cfg.pad_token_id
        return ids, mask
    if modality == "symbolic":
        patches = rng.integers(0, cfg.num_classes, size=(len(lengths), longest, PATCH_SIZE), dtype=np.int64)
        patches[~mask] = 0
        return patches, mask
    rows = rng.standard_normal((len(lengths), longest, cfg.feature_dim)).astype(np.float32)
    rows[~mask] = 0.0
    return rows, mask


def verification_batches(model: Clamp3Model, modality: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """The fixed inputs every export is checked on: a padded batch reaching the full segment
    length, and a single short item (batch and length dynamic, padding invisible)."""
    length = model.config.tower(modality).segment_length
    return [
        sample_batch(model, modality, [length, max(2, length // 3), 2], seed=0),
        sample_batch(model, modality, [min(5, length)], seed=1),
    ]


@torch.inference_mode()
def torch_outputs(
    model: Clamp3Model, modality: str, inputs: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The torch reference for one batch: the model's own path (transformers' attention,
    embedding_bag), (B, D) embeddings and (B, L, H) last hidden states as float32."""
    x, m = torch.from_numpy(inputs), torch.from_numpy(mask).long()
    hidden = model.hidden_states(modality, x, m)
    from clamp3.model import masked_mean

    embedding = model.project(modality, masked_mean(hidden, m))
    return embedding.float().numpy(), hidden.float().numpy()


class MertGraph(nn.Module):
    """MERT-v1-95M (a transformers ``HubertModel``) as the official extractor uses it:
    windows (B, T) float32 -> (13, B, H) float32, each hidden state averaged over time."""

    def __init__(self, mert: nn.Module):
        super().__init__()
        self.mert = mert

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        hidden = self.mert(input_values=windows, output_hidden_states=True).hidden_states
        return torch.stack([h.to(torch.float32).mean(dim=1) for h in hidden])


def mert_windows(seed: int = 0) -> list[np.ndarray]:
    """Fixed check windows for MERT: two full 5-s windows, and one 1.3-s window (24 kHz)."""
    rng = np.random.default_rng(seed)
    return [
        rng.standard_normal((2, 120_000)).astype(np.float32),
        rng.standard_normal((1, 31_200)).astype(np.float32),
    ]

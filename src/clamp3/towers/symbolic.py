"""Symbolic tower: the M3 patch encoder.

Each patch is 64 character ids (0..127). The official model one-hot encodes them to
(64, 128), flattens to 8192 and applies ``patch_embedding = Linear(8192, hidden)``; the result
enters a BERT as ``inputs_embeds`` (learned positions over the patch index, 512 slots).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from clamp3.config import EncoderConfig
from clamp3.towers.bert import build_bert


class PatchEncoder(nn.Module):
    """Official names: ``patch_embedding.{weight,bias}`` and ``base.*`` (a BertModel).

    A one-hot vector times the weight equals the sum of the 64 selected weight columns, so the
    embedding is computed with ``embedding_bag`` over flat indices ``position * num_classes + id``
    instead of a dense (8192 x hidden) product: same numbers up to float rounding, ~40x less work.
    """

    def __init__(self, enc: EncoderConfig, patch_size: int = 64, num_classes: int = 128):
        super().__init__()
        self.patch_size = patch_size
        self.num_classes = num_classes
        self.patch_embedding = nn.Linear(patch_size * num_classes, enc.hidden_size)
        self.base = build_bert(enc)
        offsets = torch.arange(patch_size) * num_classes
        self.register_buffer("_offsets", offsets, persistent=False)
        self._table: torch.Tensor | None = None
        self._table_key: tuple | None = None

    def _embedding_table(self) -> torch.Tensor:
        """(patch_size * num_classes, hidden) contiguous transpose of the weight.

        Cached when no gradient is needed, keyed on the tensor's storage and version so an
        in-place update or a ``.to()`` invalidates it.
        """
        weight = self.patch_embedding.weight
        if torch.is_grad_enabled() and weight.requires_grad:
            return weight.t().contiguous()
        try:
            version = weight._version
        except RuntimeError:  # inference tensors have no version counter and cannot change
            version = -1
        key = (weight.data_ptr(), version, weight.dtype, weight.device)
        if self._table is None or self._table_key != key:
            self._table = weight.detach().t().contiguous()
            self._table_key = key
        return self._table

    def embed_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """patches (B, L, patch_size) int in [0, num_classes) -> (B, L, hidden)."""
        if patches.shape[-1] != self.patch_size:
            raise ValueError(f"patches must have {self.patch_size} ids, got shape {tuple(patches.shape)}")
        flat = (patches.long() + self._offsets).reshape(-1, self.patch_size)
        summed = F.embedding_bag(flat, self._embedding_table(), mode="sum")
        return (summed + self.patch_embedding.bias).reshape(*patches.shape[:-1], -1)

    def forward(self, patches: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """patches (B, L, 64) int, attention_mask (B, L) -> last hidden state (B, L, hidden)."""
        embeds = self.embed_patches(patches)
        return self.base(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state


def build_symbolic_tower(enc: EncoderConfig, patch_size: int = 64, num_classes: int = 128) -> PatchEncoder:
    """Official name: ``symbolic_model`` (CLaMP 2: ``music_model``; M3: ``encoder``)."""
    return PatchEncoder(enc, patch_size=patch_size, num_classes=num_classes)

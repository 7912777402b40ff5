"""Item-level embedding with the official segmentation, packed without padding.

Every item is cut into segments (:mod:`clamp3.segments`); the segments of all items are sorted
by length and packed into batches by a token budget (:mod:`clamp3.batching`), and each batch
runs through the packed forward (:mod:`clamp3.towers.packed`): dense layers over the real tokens
of all its segments at once, attention within each segment. The official extractor pads every
input to the full segment length, one file at a time; attention never crosses a segment and
pooling covers only real tokens, so the numbers equal one item at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch

from clamp3.batching import check_batch_size, plan_batches
from clamp3.config import Clamp3Config
from clamp3.inputs import add_boundary_rows, check_feature_rows, check_patch_ids, check_token_ids
from clamp3.segments import embed_segmented
from clamp3.towers.packed import Packing, segment_means


class FeatureModel(Protocol):
    """What item-level embedding needs of a model (``Clamp3Model`` is one). A protocol rather
    than the class, so that this module does not import ``clamp3.model``, which imports it."""

    config: Clamp3Config
    training: bool

    @property
    def device(self) -> torch.device: ...

    def require(self, modality: str) -> None: ...

    def get_features(self, modality: str, inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor: ...

    def hidden_states(self, modality: str, inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor: ...

    def packed_hidden_states(self, modality: str, inputs: torch.Tensor, packing: Packing) -> torch.Tensor: ...

    def project(self, modality: str, pooled: torch.Tensor) -> torch.Tensor: ...

    def eval(self) -> FeatureModel: ...

    def train(self, mode: bool = True) -> FeatureModel: ...


def prepare_text(ids: Sequence[int], vocab_size: int | None = None) -> torch.Tensor:
    """A token-id list -> (n,) int64 tensor; not empty, ids below ``vocab_size`` when given."""
    return torch.as_tensor(check_token_ids(ids, vocab_size))


def prepare_patches(patches: np.ndarray, patch_size: int = 64) -> torch.Tensor:
    """(n, patch_size) ids -> int64 tensor; ids must lie in [0, 128)."""
    return torch.as_tensor(check_patch_ids(patches, patch_size))


def prepare_audio(features: np.ndarray, feature_dim: int = 768) -> torch.Tensor:
    """Feature rows (n_windows, F) (or the official (1, n_windows, F)) -> (n_windows + 2, F)
    float32 with a zero row before and after, the official BOS/EOS. A wrong shape or a
    non-finite value is an ``InputError`` (a ``ValueError``)."""
    rows = check_feature_rows(features, feature_dim, "<audio features>")
    return torch.from_numpy(add_boundary_rows(rows))


def _pad_value(model: FeatureModel, modality: str) -> int:
    return model.config.tower("text").pad_token_id if modality == "text" else 0


def pad_stack(pieces: list[torch.Tensor], pad_value: float = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad (l_i, ...) tensors to the longest -> (B, L, ...) and a (B, L) int64 mask with
    1 on real positions (dynamic padding: a batch is only as long as its longest piece)."""
    longest = max(p.shape[0] for p in pieces)
    batch = pieces[0].new_full((len(pieces), longest, *pieces[0].shape[1:]), pad_value)
    mask = torch.zeros(len(pieces), longest, dtype=torch.long)
    for i, piece in enumerate(pieces):
        batch[i, : piece.shape[0]] = piece
        mask[i, : piece.shape[0]] = 1
    return batch, mask


@torch.inference_mode()
def run_segments(
    model: FeatureModel,
    modality: str,
    pieces: list[torch.Tensor],
    pooled: bool,
    batch_size: int,
) -> list[np.ndarray]:
    """Run each piece (a segment, length <= the tower's segment length) through the tower.

    Returns per piece the projected pooled vector (D,) if ``pooled`` else the last hidden
    state (l, H), float32. Pieces are packed without padding into batches of at most
    ``batch_size`` full segments' worth of tokens (:func:`clamp3.batching.plan_batches`), so a
    batch never holds more activations than ``batch_size`` padded segments would. The model
    must be in eval mode.
    """
    model.require(modality)
    budget = batch_size * model.config.tower(modality).segment_length
    results: list[np.ndarray | None] = [None] * len(pieces)
    for idx in plan_batches([p.shape[0] for p in pieces], budget):
        for i, out in zip(idx, run_packed(model, modality, [pieces[i] for i in idx], pooled), strict=True):
            results[i] = out
    return results  # type: ignore[return-value]


def run_packed(
    model: FeatureModel, modality: str, batch: list[torch.Tensor], pooled: bool
) -> list[np.ndarray]:
    """One packed forward over ``batch`` -> per piece (D,) projected mean or (l, H) hidden
    states, float32. Any order is correct; the planner's decreasing lengths make one attention
    call per distinct length."""
    packing = Packing.of([p.shape[0] for p in batch], model.device)
    hidden = model.packed_hidden_states(modality, torch.cat(batch).to(model.device), packing)
    if pooled:
        return list(model.project(modality, segment_means(hidden, packing)).float().cpu().numpy())
    rows = hidden.float().cpu().numpy()
    return [rows[start : start + n] for start, n in zip(packing.starts, packing.lengths, strict=True)]


def run_padded(
    model: FeatureModel, modality: str, batch: list[torch.Tensor], pooled: bool
) -> list[np.ndarray]:
    """The same as :func:`run_packed` through the ordinary transformers forward on a padded
    (B, L) batch with an attention mask (the reference the packed path is tested against)."""
    inputs, mask = pad_stack(batch, _pad_value(model, modality))
    inputs, mask = inputs.to(model.device), mask.to(model.device)
    if pooled:
        return list(model.get_features(modality, inputs, mask).float().cpu().numpy())
    hidden = model.hidden_states(modality, inputs, mask).float().cpu().numpy()
    return [hidden[row, : piece.shape[0]] for row, piece in enumerate(batch)]


def embed_items(
    model: FeatureModel,
    modality: str,
    items: list[torch.Tensor],
    pooled: bool = True,
    batch_size: int = 32,
) -> list[np.ndarray]:
    """Items (n_i, ...) -> (D,) global vectors (length-weighted segment mean) or (n_i, H).

    The model is put in eval mode for the call (dropout off) and restored afterwards.
    """
    length = model.config.tower(modality).segment_length
    batch_size = check_batch_size(batch_size)
    was_training = model.training
    model.eval()
    try:
        return embed_segmented(
            items, length, pooled, lambda pieces: run_segments(model, modality, pieces, pooled, batch_size)
        )
    finally:
        model.train(was_training)

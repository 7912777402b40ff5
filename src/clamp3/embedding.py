"""Item-level embedding with the official segmentation, batched with dynamic padding.

Every item is cut into segments (:mod:`clamp3.segments`); all segments of all items are
sorted by length and run in batches padded only to the longest segment of the batch (the
official extractor pads every input to the full segment length, one file at a time). Masked
attention and masked pooling make padding invisible, so the numbers equal one item at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch

from clamp3.config import Clamp3Config
from clamp3.inputs import add_boundary_rows, check_feature_rows, check_patch_ids, check_token_ids
from clamp3.segments import Segment, join_unpooled, pool_segments, segment_item


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

    def eval(self) -> FeatureModel: ...

    def train(self, mode: bool = True) -> FeatureModel: ...


def prepare_text(ids: Sequence[int]) -> torch.Tensor:
    """A token-id list -> (n,) int64 tensor; must not be empty."""
    return torch.as_tensor(check_token_ids(ids))


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


def plan_batches(lengths: list[int], batch_size: int, max_padding: float = 0.1) -> list[list[int]]:
    """Group piece indices into batches, longest first, padding only to each batch's longest.

    A batch takes at most ``batch_size`` pieces and closes early when the next piece would make
    padding more than ``max_padding`` of the batch's positions: on real collections lengths
    vary widely (a 512-patch segment next to 60-patch pieces), and padding a batch of short
    pieces to its one long member would multiply the work. Small batches cost little on CPU
    (matrix products run near their peak rate from ~64 rows).
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    total = 0
    for i in order:
        if current:
            longest = lengths[current[0]]
            slots = (len(current) + 1) * longest
            if len(current) == batch_size or slots - (total + lengths[i]) > max_padding * slots:
                batches.append(current)
                current, total = [], 0
        current.append(i)
        total += lengths[i]
    if current:
        batches.append(current)
    return batches


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
    state (l, H), float32. Pieces are batched longest first (:func:`plan_batches`).
    """
    model.require(modality)
    device = model.device
    results: list[np.ndarray | None] = [None] * len(pieces)
    pad = _pad_value(model, modality)
    for idx in plan_batches([p.shape[0] for p in pieces], batch_size):
        inputs, mask = pad_stack([pieces[i] for i in idx], pad)
        inputs, mask = inputs.to(device), mask.to(device)
        if pooled:
            out = model.get_features(modality, inputs, mask).float().cpu().numpy()
            for row, i in enumerate(idx):
                results[i] = out[row]
        else:
            hidden = model.hidden_states(modality, inputs, mask).float().cpu().numpy()
            for row, i in enumerate(idx):
                results[i] = hidden[row, : pieces[i].shape[0]]
    return results  # type: ignore[return-value]


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
    plans: list[list[Segment]] = [segment_item(item.shape[0], length) for item in items]
    pieces = [item[s.start : s.end] for item, plan in zip(items, plans) for s in plan]
    was_training = model.training
    model.eval()
    try:
        outputs = run_segments(model, modality, pieces, pooled, batch_size) if pieces else []
    finally:
        model.train(was_training)
    results, cursor = [], 0
    for plan in plans:
        chunk = outputs[cursor : cursor + len(plan)]
        cursor += len(plan)
        results.append(pool_segments(np.stack(chunk), plan) if pooled else join_unpooled(chunk, plan))
    return results

"""The packed forward equals the towers' ordinary (padded, masked) transformers forward, and the
token-budget planner covers every piece once within its budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from clamp3 import Clamp3Model
from clamp3.batching import plan_batches
from clamp3.embedding import pad_stack, run_packed, run_padded, run_segments
from clamp3.towers.packed import Packing, packed_forward


@pytest.fixture(scope="module")
def tiny():
    return Clamp3Model.from_preset("tiny", seed=0).eval()


def _pieces(model, modality, lengths, seed=0):
    gen = torch.Generator().manual_seed(seed)
    if modality == "text":
        vocab = model.config.text.vocab_size
        return [torch.randint(0, vocab, (n,), generator=gen) for n in lengths]
    if modality == "symbolic":
        return [torch.randint(0, 128, (n, 64), generator=gen) for n in lengths]
    return [torch.randn(n, model.config.audio.feature_dim, generator=gen) for n in lengths]


def _mixes(length):
    """Length mixes: single short pieces, full segments, equal lengths, everything mixed."""
    return [
        [1],
        [2],
        [3],
        [length],
        [length, length, length],
        [1, 1, 2, 3],
        [length, 1, length - 1, 2, 3, length, 5, 5, 1],
        [3, 2, 1, 2, 3],  # increasing and decreasing: equal lengths not adjacent
    ]


@pytest.mark.parametrize("modality", ["text", "symbolic", "audio"])
def test_packed_hidden_states_equal_the_transformers_forward(tiny, modality):
    length = tiny.config.tower(modality).segment_length
    tower = getattr(tiny, f"{modality}_model")
    pad = tiny.config.text.pad_token_id if modality == "text" else 0
    for k, lengths in enumerate(_mixes(length)):
        pieces = _pieces(tiny, modality, lengths, seed=k)
        if modality == "text" and lengths[0] > 2:
            pieces[0][1] = pad  # a pad id inside real text gets XLM-R's pad position, as in transformers
        with torch.inference_mode():
            packed = packed_forward(tower, torch.cat(pieces), Packing.of(lengths))
            inputs, mask = pad_stack(pieces, pad)
            reference = tiny.hidden_states(modality, inputs, mask)
        start = 0
        for row, n in enumerate(lengths):
            torch.testing.assert_close(packed[start : start + n], reference[row, :n], atol=1e-5, rtol=0)
            start += n


@pytest.mark.parametrize("modality", ["text", "symbolic", "audio"])
@pytest.mark.parametrize("pooled", [True, False])
def test_packed_outputs_equal_padded_outputs(tiny, modality, pooled):
    length = tiny.config.tower(modality).segment_length
    lengths = [length, 7, 1, length, 2, 3, length - 1, 7]
    pieces = _pieces(tiny, modality, lengths, seed=5)
    with torch.inference_mode():
        packed = run_packed(tiny, modality, pieces, pooled)
        padded = run_padded(tiny, modality, pieces, pooled)
        planned = run_segments(tiny, modality, pieces, pooled, batch_size=2)  # several batches
    for a, b, c in zip(packed, padded, planned, strict=True):
        assert a.dtype == np.float32 and a.shape == b.shape == c.shape
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
        np.testing.assert_allclose(c, b, atol=1e-5, rtol=0)


def test_positions_restart_in_every_segment(tiny):
    # The same piece packed behind others must give the same states as alone.
    pieces = _pieces(tiny, "audio", [5, 5, 3])
    tower = tiny.audio_model
    with torch.inference_mode():
        together = packed_forward(tower, torch.cat(pieces), Packing.of([5, 5, 3]))
        alone = packed_forward(tower, pieces[2], Packing.of([3]))
    torch.testing.assert_close(together[10:], alone, atol=1e-6, rtol=0)


def test_packed_forward_refuses_training_mode_and_wrong_sizes():
    model = Clamp3Model.from_preset("tiny", seed=0)
    pieces = torch.randn(4, model.config.audio.feature_dim)
    with pytest.raises(RuntimeError, match="eval mode"):
        packed_forward(model.audio_model.train(), pieces, Packing.of([4]))
    with pytest.raises(ValueError, match="4 rows, the packing 5"):
        packed_forward(model.audio_model.eval(), pieces, Packing.of([2, 3]))
    with pytest.raises(ValueError, match="lengths >= 1"):
        Packing.of([3, 0])


def test_packing_layout():
    packing = Packing.of([4, 4, 2, 4])
    assert packing.starts == (0, 4, 8, 10) and packing.total == 14
    assert packing.runs == ((0, 2, 4), (8, 1, 2), (10, 1, 4))
    assert packing.positions.tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 0, 1, 2, 3]
    assert packing.segment_ids.tolist() == [0] * 4 + [1] * 4 + [2] * 2 + [3] * 4


@settings(deadline=None)
@given(
    lengths=st.lists(st.integers(1, 512), min_size=1, max_size=200),
    budget=st.integers(1, 4096),
    padded=st.booleans(),
)
def test_plan_covers_every_piece_once_within_the_budget(lengths, budget, padded):
    batches = plan_batches(lengths, budget, padded=padded)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        sizes = [lengths[i] for i in batch]
        assert sizes == sorted(sizes, reverse=True)
        cost = len(batch) * sizes[0] if padded else sum(sizes)
        assert cost <= budget or len(batch) == 1
        if padded:
            assert cost - sum(sizes) <= 0.1 * cost or len(batch) == 1


def test_packed_plan_fills_the_budget_and_padded_plan_keeps_long_pieces_apart():
    lengths = [512, 60, 61, 59, 500, 62]
    assert plan_batches(lengths, 1024) == [[0, 4], [5, 2, 1, 3]]
    assert plan_batches(lengths, 600) == [[0], [4, 5], [2, 1, 3]]
    assert plan_batches(lengths, 16 * 512, padded=True) == [[0, 4], [5, 2, 1, 3]]
    assert plan_batches(lengths, 16 * 512, padded=True, max_items=1) == [[0], [4], [5], [2], [1], [3]]
    assert plan_batches([], 10) == []
    with pytest.raises(ValueError):
        plan_batches([1], 0)

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
from clamp3.config import load_preset
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


def test_packed_forward_refuses_wrong_sizes_and_other_encoders():
    model = Clamp3Model.from_preset("tiny", seed=0).eval()
    pieces = torch.randn(4, model.config.audio.feature_dim)
    with pytest.raises(ValueError, match="4 rows, the packing 5"):
        packed_forward(model.audio_model, pieces, Packing.of([2, 3]))
    with pytest.raises(ValueError, match="lengths >= 1"):
        Packing.of([3, 0])
    with pytest.raises(TypeError, match="no packed forward for Linear"):
        packed_forward(torch.nn.Linear(4, 4), pieces, Packing.of([4]))
    model.audio_model.config.is_decoder = True
    with pytest.raises(ValueError, match="plain encoders"):
        packed_forward(model.audio_model, pieces, Packing.of([4]))


def _tiny_with_dropout(p):
    config = load_preset("tiny")
    for modality in ("text", "symbolic", "audio"):
        tower = config.tower(modality)
        tower.encoder.dropout = tower.encoder.attention_dropout = p
    torch.manual_seed(0)
    return Clamp3Model(config)


def _padded_batch(model, modality, lengths, seed):
    pieces = _pieces(model, modality, lengths, seed=seed)
    if modality == "symbolic":
        pieces = [p.to(torch.uint8) for p in pieces]  # the training batches' patch dtype
    return pad_stack(pieces, model.config.text.pad_token_id if modality == "text" else 0)


@pytest.mark.parametrize("modality", ["text", "symbolic", "audio"])
def test_packed_features_and_their_gradients_equal_the_padded_forward(modality):
    # Training mode with dropout off: the loss, the features and every gradient of the packed
    # forward equal those of the padded transformers forward.
    length = Clamp3Model.from_preset("tiny", seed=0).config.tower(modality).segment_length
    for k, lengths in enumerate([[1], [length, 2, 3, length, 1, length - 1, 7], [3, 3, 3]]):
        results = []
        for packed in (False, True):
            model = _tiny_with_dropout(0.0).train()
            inputs, mask = _padded_batch(model, modality, lengths, seed=k)
            fn = model.packed_features if packed else model.get_features
            features = fn(modality, inputs, mask)
            (features.square().sum() + features[0].sum()).backward()
            grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
            results.append((features.detach(), grads))
        (padded, padded_grads), (packed, packed_grads) = results
        torch.testing.assert_close(packed, padded, atol=1e-5, rtol=0)
        assert packed_grads.keys() == padded_grads.keys() and len(packed_grads) > 4
        for name, grad in padded_grads.items():
            torch.testing.assert_close(packed_grads[name], grad, atol=1e-4, rtol=1e-4, msg=name)


def test_packed_features_keep_the_batch_order_and_refuse_masks_with_gaps(tiny):
    inputs, mask = _padded_batch(tiny, "audio", [2, 5, 3, 5], seed=3)
    with torch.inference_mode():
        packed = tiny.packed_features("audio", inputs, mask)
        single = [tiny.packed_features("audio", inputs[i : i + 1], mask[i : i + 1]) for i in range(4)]
    torch.testing.assert_close(packed, torch.cat(single), atol=1e-6, rtol=0)
    holed = mask.clone()
    holed[1, 1] = 0
    with pytest.raises(ValueError, match="real tokens first"):
        tiny.packed_features("audio", inputs, holed)


def test_packed_training_with_dropout_draws_like_the_padded_forward():
    # With dropout on, both forwards are random; averaged over many draws they agree, and a
    # draw differs from the dropout-free features (the dropout layers do run).
    model = _tiny_with_dropout(0.3)
    inputs, mask = _padded_batch(model, "text", [6, 4], seed=1)
    with torch.no_grad():
        clean = model.eval().get_features("text", inputs, mask)
        model.train()
        torch.manual_seed(0)
        padded = torch.stack([model.get_features("text", inputs, mask) for _ in range(400)])
        packed = torch.stack([model.packed_features("text", inputs, mask) for _ in range(400)])
    assert (packed[0] - clean).abs().max() > 1e-3
    spread = padded.std(0).mean()
    assert (packed.mean(0) - padded.mean(0)).abs().mean() < 0.25 * spread
    assert abs(packed.std(0).mean() - spread) < 0.15 * spread


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

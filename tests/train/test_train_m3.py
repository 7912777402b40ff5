"""M3 pre-training: masking proportions, official names, a tiny run that loads and seeds CLaMP 3."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from clamp3 import Clamp3Model
from clamp3.train import config_from_dict, train
from clamp3.train.config import M3Config
from clamp3.train.logger import read_log
from clamp3.train.m3 import KEEP, MASK, MASK_ID, SHUFFLE, M3Task, build_decoder, m3_model_config, mask_patches
from clamp3.train.toy import write_toy_pairs

# Tiny models train several times faster on one thread than on two busy cores.
pytestmark = pytest.mark.usefixtures("one_thread")


def _patches(n: int, rng: np.random.Generator) -> np.ndarray:
    """n patches [BOS, chars..., EOS, pad...] of random lengths (some full, without EOS)."""
    out = np.zeros((n, 64), dtype=np.int64)
    for i in range(n):
        length = int(rng.integers(1, 66))
        chars = rng.integers(32, 127, size=min(length, 63))
        row = np.concatenate([[1], chars, [2]])[:64]
        out[i, : len(row)] = row
    return out


def test_masking_proportions_on_a_large_sample():
    rng = np.random.default_rng(0)
    settings = M3Config()
    kinds, selected_total, total = [], 0, 0
    for _ in range(300):
        patches = _patches(int(rng.integers(5, 120)), rng)
        inputs, selected, kind = mask_patches(patches, rng, settings)
        n = len(patches)
        assert selected.sum() == int(np.ceil(0.45 * n))  # exactly ceil(45 %) per item
        assert (kind[~selected] == KEEP).all() and (inputs[~selected] == patches[~selected]).all()
        assert (inputs[kind == MASK] == MASK_ID).all()
        for i in np.flatnonzero(kind == SHUFFLE):
            eos = np.flatnonzero(patches[i] == 2)
            end = eos[0] if eos.size else 64
            assert inputs[i, 0] == 1 and (inputs[i, end:] == patches[i, end:]).all()
            assert sorted(inputs[i, 1:end]) == sorted(patches[i, 1:end])
        kinds.append(kind[selected])
        selected_total += selected.sum()
        total += n
    kinds = np.concatenate(kinds)
    shares = [np.mean(kinds == k) for k in (MASK, SHUFFLE, KEEP)]
    assert len(kinds) > 5000
    assert shares == pytest.approx([0.8, 0.1, 0.1], abs=0.015)
    assert selected_total / total == pytest.approx(0.45, abs=0.02)


def test_evaluation_keeps_the_selected_patches():
    rng = np.random.default_rng(1)
    patches = _patches(40, rng)
    inputs, selected, kind = mask_patches(patches, rng, M3Config(), train=False)
    assert selected.sum() == 18 and (inputs == patches).all() and (kind == KEEP).all()


def test_state_dict_names_are_the_official_m3_names(parity_dir):
    from clamp3.config import load_preset
    from clamp3.utils.meta import params_on_meta

    official = {k: tuple(s) for k, s in json.loads((parity_dir / "keys/m3_model.json").read_text())}
    with params_on_meta():
        config = m3_model_config(load_preset("m3"))
        task = M3Task(Clamp3Model(config), build_decoder(config.tower("symbolic")))
    ours = {k: tuple(v.shape) for k, v in task.official_state_dict().items()}
    pooler = {k for k in official if k.startswith("encoder.base.pooler.")}  # stored, never used
    assert ours == {k: s for k, s in official.items() if k not in pooler}
    small = build_decoder(m3_model_config(load_preset("tiny")).tower("symbolic"))
    assert small.base.lm_head.weight is small.base.transformer.wte.weight  # tied, as the official


def test_tiny_m3_run_learns_loads_and_seeds_a_clamp3_stage(tmp_path, tiny_tokenizer):
    jsonl = write_toy_pairs(tmp_path / "data", n=12, feature_dim=32)
    tiny_tokenizer.save(tmp_path / "data")
    m3 = {
        "preset": "m3",
        "optim": {"lr": 2e-3, "batch_size": 4, "epochs": 100, "max_steps": 30, "warmup_steps": 0},
    }
    config = config_from_dict(
        {
            "output_dir": str(tmp_path / "m3"),
            "model": "tiny",
            "train_data": str(tmp_path / "data/abc"),
            "eval_fraction": 0.0,
            "log_every": 1,
            "save_every": 1000,
            "show_progress": False,
            "stages": [m3],
        }
    )
    best = train(config)
    losses = [r["loss"] for r in read_log(tmp_path / "m3/log.jsonl", "train")]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5, losses
    encoder = Clamp3Model.from_pretrained(best)
    assert encoder.config.modalities == ("symbolic",) and not encoder.config.projection
    assert (best / "m3_decoder.safetensors").is_file()

    # A CLaMP 3 stage starts from it (the official CLAMP3_LOAD_M3).
    clamp = config_from_dict(
        {
            "output_dir": str(tmp_path / "clamp"),
            "model": "tiny",
            "init_symbolic_from": str(best),
            "tokenizer": str(tmp_path / "data"),
            "train_data": str(jsonl),
            "eval_fraction": 0.0,
            "show_progress": False,
            "stages": [{"preset": "audio-text-frozen", "optim": {"batch_size": 4, "max_steps": 1}}],
        }
    )
    final = load_file(train(clamp) / "model.safetensors")
    encoder_weights = load_file(best / "model.safetensors")
    assert all(torch.equal(final[k], v) for k, v in encoder_weights.items())

    # Pre-training continues from the run's best, decoder included.
    optim = dataclasses.replace(config.stages[0].optim, max_steps=1)
    stages = [dataclasses.replace(config.stages[0], optim=optim)]
    out = str(tmp_path / "m3b")
    again = dataclasses.replace(config, output_dir=out, init_from=str(best), model=None, stages=stages)
    train(again)
    first = read_log(tmp_path / "m3b/log.jsonl", "train")[0]["loss"]
    assert first < np.mean(losses[:5]) - 0.5


def test_placeholder_rows_count_for_nothing_in_the_loss():
    # Evaluation pads a rank's empty share with a placeholder item and rows=0.
    from clamp3.config import load_preset
    from clamp3.train.m3 import PatchBatch

    config = m3_model_config(load_preset("tiny"))
    torch.manual_seed(0)
    task = M3Task(Clamp3Model(config), build_decoder(config.tower("symbolic"))).eval()
    rng = np.random.default_rng(2)
    items = [_patches(n, rng) for n in (7, 11)]
    selected = [
        mask_patches(p, np.random.default_rng(i), M3Config(), train=False)[1] for i, p in enumerate(items)
    ]

    def batch(k: int) -> PatchBatch:
        length = max(len(p) for p in items[:k])
        patches = torch.zeros(k, length, 64, dtype=torch.long)
        mask = torch.zeros(k, length, dtype=torch.long)
        chosen = torch.zeros(k, length, dtype=torch.bool)
        for i in range(k):
            patches[i, : len(items[i])] = torch.from_numpy(items[i])
            mask[i, : len(items[i])] = 1
            chosen[i, : len(items[i])] = torch.from_numpy(selected[i])
        return PatchBatch(patches, mask, chosen, patches)

    with torch.no_grad():
        alone = task(batch(1))
        padded = task(batch(2), rows=1)
        assert task(batch(2))["loss"] != pytest.approx(alone["loss"].item())
    for key in ("loss", "accuracy"):
        torch.testing.assert_close(padded[key], alone[key])


def test_the_decoder_computes_the_official_gelu_new_decoder():
    # torch's fused tanh GELU in place of transformers' "gelu_new" formula (the official
    # decoder's): same weights, same logits to float rounding, in training mode's backward too.
    import copy

    from transformers.activations import ACT2FN, NewGELUActivation

    tower = Clamp3Model.from_preset("tiny", seed=0).config.symbolic
    torch.manual_seed(0)
    decoder = build_decoder(tower, num_layers=2).eval()
    assert decoder.base.config.activation_function == "gelu_pytorch_tanh"
    official = copy.deepcopy(decoder)
    for block in official.base.transformer.h:
        block.mlp.act = ACT2FN["gelu_new"]
    assert isinstance(official.base.transformer.h[1].mlp.act, NewGELUActivation)
    features = torch.randn(5, 32, requires_grad=True)
    targets = torch.randint(4, 128, (5, 64))
    targets[:, 0], targets[2, 30:] = 1, 0
    ours, theirs = decoder(features, targets), official(features, targets)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    (grad_ours,) = torch.autograd.grad(ours.square().sum(), features)
    (grad_theirs,) = torch.autograd.grad(theirs.square().sum(), features)
    torch.testing.assert_close(grad_ours, grad_theirs, atol=1e-4, rtol=1e-5)

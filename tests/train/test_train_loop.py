"""The training loop on the tiny preset: learning, exact resume, freezing, warmup, outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from clamp3 import Clamp3Model, Clamp3Pipeline
from clamp3.train import config_from_dict, train
from clamp3.train.logger import read_log

# Tiny models train several times faster on one thread than on two busy cores.
pytestmark = pytest.mark.usefixtures("one_thread")

STAGE = "stages/01-{}/checkpoints/step_{:08d}/model/model.safetensors"


def _config(toy, out, stages, **extra):
    data = {
        "output_dir": str(out),
        "model": "tiny",
        "tokenizer": str(toy),
        "train_data": str(toy / "pairs.jsonl"),
        "eval_fraction": 0.25,
        "log_every": 1,
        "show_progress": False,
        "stages": stages,
    }
    data.update(extra)
    return config_from_dict(data)


def _stage(preset, **optim):
    return {"preset": preset, "optim": {"lr": 1e-3, "batch_size": 4, "warmup_steps": 0, **optim}}


def _losses(run, kind="train"):
    return [(r["stage"], r["step"], r["loss"]) for r in read_log(run / "log.jsonl", kind)]


def test_loss_falls_on_an_aligned_set(toy, tmp_path):
    stage = _stage("audio", batch_size=8, max_steps=40, epochs=100)
    stage["contrastive"] = {"text_dropout": False}
    train(_config(toy, tmp_path / "run", [stage], eval_fraction=0, save_every=1000))
    losses = [loss for _, _, loss in _losses(tmp_path / "run")]
    assert len(losses) == 40
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.4, losses


def test_resume_repeats_an_uninterrupted_run_bit_for_bit(toy, tmp_path):
    # 12 training items, batch 4: 3 micro-batches an epoch; 2 per step, so steps straddle
    # epochs, and the stop after 2 steps falls inside epoch 1. Dropout is on (tiny preset).
    stages = [_stage("symbolic", epochs=4, grad_accum=2, warmup_steps=2)]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    train(_config(toy, whole, stages, eval_every=2, save_every=4))
    assert train(_config(toy, parts, stages, eval_every=2, save_every=4), stop_after=2) is None
    assert (parts / "stages/01-symbolic/checkpoints/step_00000002").is_dir()
    train(_config(toy, parts, stages, eval_every=2, save_every=4), resume=True)
    a = load_file(whole / STAGE.format("symbolic", 6))
    b = load_file(parts / STAGE.format("symbolic", 6))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _losses(whole) == _losses(parts) and len(_losses(whole)) == 6
    assert _losses(whole, "eval") == _losses(parts, "eval")
    first = load_file(whole / STAGE.format("symbolic", 4))
    assert not all(torch.equal(a[k], first[k]) for k in a)  # it did train in between


def test_frozen_towers_stay_bitwise_and_warmup_applies(toy, tmp_path, tiny_model_dir):
    stages = [_stage("audio-text-frozen", epochs=2, warmup_steps=3)]
    config = _config(toy, tmp_path / "run", stages, init_from=str(tiny_model_dir), model=None)
    best = train(config)
    before = load_file(tiny_model_dir / "model.safetensors")
    after = load_file(best / "model.safetensors")
    frozen = [k for k in before if not k.startswith("audio_")]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("audio_proj"))
    # The never-read word-embedding row of the audio BERT stays too.
    key = "audio_model.embeddings.word_embeddings.weight"
    assert torch.equal(before[key], after[key])
    lrs = {r["step"]: r["lr"] for r in read_log(tmp_path / "run/log.jsonl", "train")}
    assert lrs[1] == pytest.approx(1e-3 / 3) and lrs[2] == pytest.approx(2e-3 / 3)
    assert lrs[3] == lrs[4] == lrs[6] == 1e-3


def test_stages_chain_and_the_result_loads_and_embeds(toy, tmp_path, tiny_tokenizer):
    stages = [_stage("symbolic", epochs=1), _stage("audio-text-frozen", epochs=1)]
    best = train(_config(toy, tmp_path / "run", stages))
    assert best == tmp_path / "run/best" and (best / "tokenizer.json").is_file()
    # Stage 2 started from stage 1's best and froze text + symbolic.
    first = load_file(tmp_path / "run/stages/01-symbolic/best/model.safetensors")
    final = load_file(best / "model.safetensors")
    assert all(torch.equal(first[k], final[k]) for k in first if not k.startswith("audio_"))
    model = Clamp3Model.from_pretrained(best)
    ids = tiny_tokenizer.encode("a quiet waltz")
    text = model.embed_text_ids([ids])[0]
    audio = model.embed_audio_features([np.load(toy / "npy/0000.npy")])[0]
    patches = np.zeros((3, 64), dtype=np.int64)
    patches[:, 0] = 1
    symbolic = model.embed_patches([patches])[0]
    assert text.shape == audio.shape == symbolic.shape == (32,)
    assert np.isfinite(np.stack([text, audio, symbolic])).all()
    assert Clamp3Pipeline(model).tokenizer.encode("a quiet waltz") == ids


def test_an_existing_run_is_not_overwritten(toy, tmp_path):
    config = _config(toy, tmp_path / "run", [_stage("audio", max_steps=1)])
    train(config)
    with pytest.raises(FileExistsError, match="resume"):
        train(config)
    assert train(config, resume=True) == tmp_path / "run/best"  # finished stages are skipped


def test_frozen_towers_are_kept_in_eval_mode():
    from clamp3.train.loss import InfoNCELoss
    from clamp3.train.task import ContrastiveTask, freeze, set_train_mode

    model = Clamp3Model.from_preset("tiny", seed=0)
    names = freeze(model, ["audio"])
    assert names and all(n.startswith("audio_") for n in names)
    task = ContrastiveTask(model, "audio", InfoNCELoss())
    set_train_mode(task, ["audio"])
    assert model.audio_model.training and model.audio_proj.training
    assert not model.text_model.training and not model.symbolic_model.training
    assert not any(m.training for m in model.text_model.modules())


def test_loader_workers_do_not_change_the_batches(toy, tmp_path):
    stages = [_stage("audio", max_steps=3, epochs=2)]
    train(_config(toy, tmp_path / "w0", stages, save_every=1000))
    train(_config(toy, tmp_path / "w2", stages, save_every=1000, num_workers=2))
    assert _losses(tmp_path / "w0") == _losses(tmp_path / "w2")


def test_loader_workers_stop_at_once_after_an_error():
    # A failed or interrupted stage stops its loader's workers itself: the traceback would keep
    # the iterator alive until interpreter exit, where its shutdown can hang.
    import multiprocessing

    from clamp3.train.loop import stop_loader_workers

    loader = iter(torch.utils.data.DataLoader(range(64), batch_size=4, num_workers=1))
    next(loader)
    assert multiprocessing.active_children()
    stop_loader_workers(loader)
    assert not multiprocessing.active_children()
    stop_loader_workers(iter(torch.utils.data.DataLoader(range(4))))  # no workers: nothing to do


def _start_without_dropout(folder):
    """A tiny model without dropout saved to ``folder``: packed and padded runs then draw no
    masks, so they compute the same losses."""
    from clamp3.config import load_preset

    config = load_preset("tiny")
    for modality in ("text", "symbolic", "audio"):
        config.tower(modality).encoder.dropout = config.tower(modality).encoder.attention_dropout = 0.0
    torch.manual_seed(0)
    Clamp3Model(config).save_pretrained(folder)
    return str(folder)


def test_packed_training_follows_the_padded_run(toy, tmp_path):
    # Without dropout a packed stage and a padded one see the same batches and compute the same
    # losses and updates, to float rounding; both write the same model.
    _start_without_dropout(tmp_path / "start")
    runs = {}
    for packed in (True, False):
        stage = _stage("audio", max_steps=4)
        stage["contrastive"] = {"packed": packed}
        out = tmp_path / f"packed-{packed}"
        train(_config(toy, out, [stage], model=None, init_from=str(tmp_path / "start"), save_every=1000))
        runs[packed] = out
    packed, padded = (_losses(runs[p]) for p in (True, False))
    assert len(packed) == len(padded) == 4
    for (_, _, a), (_, _, b) in zip(packed, padded):
        assert a == pytest.approx(b, abs=1e-4)
    a, b = (load_file(runs[p] / "best/model.safetensors") for p in (True, False))
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4
    start = load_file(tmp_path / "start/model.safetensors")
    assert max((a[k] - start[k]).abs().max().item() for k in a) > 1e-3  # it did train


@pytest.mark.parametrize("preset", ["symbolic", "audio"])
def test_packed_training_runs_under_bf16_autocast(toy, tmp_path, preset, monkeypatch):
    # Mixed precision (the GPU recipe; bf16 autocast also runs on a CPU): the packed towers see
    # bf16 projections and fp32 LayerNorms, and follow the padded bf16 run to bf16 rounding.
    start = _start_without_dropout(tmp_path / "start")
    seen = []
    packed_features = Clamp3Model.packed_features

    def recording(self, modality, inputs, mask):
        features = packed_features(self, modality, inputs, mask)
        seen.append((torch.is_autocast_enabled("cpu"), features.dtype))
        return features

    monkeypatch.setattr(Clamp3Model, "packed_features", recording)
    runs, calls = {}, {}
    for packed in (True, False):
        stage = _stage(preset, max_steps=3)
        stage["contrastive"] = {"packed": packed}
        out = tmp_path / f"packed-{packed}"
        extra = {"model": None, "init_from": start, "precision": "bf16", "save_every": 1000}
        train(_config(toy, out, [stage], **extra))
        runs[packed] = [loss for _, _, loss in _losses(out)]
        calls[packed] = len(seen) - sum(calls.values())
    # Two calls (text, music) per packed step and evaluation batch, none in the padded run.
    assert calls[True] >= 2 * 3 and calls[False] == 0, calls
    assert all(on and dtype == torch.bfloat16 for on, dtype in seen), seen
    assert len(runs[True]) == len(runs[False]) == 3
    assert all(np.isfinite(runs[True]))
    assert runs[True] == pytest.approx(runs[False], abs=0.02)

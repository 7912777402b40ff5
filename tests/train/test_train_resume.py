"""Resuming safely: the config is compared with the run's, and SIGTERM / SIGINT leave a
checkpoint from which the run continues exactly as if it had not stopped."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from clamp3.train import config_from_dict, train
from clamp3.train.logger import read_log
from clamp3.train.rundir import config_changes
from clamp3.utils.errors import InputError

# Tiny models train several times faster on one thread than on two busy cores.
pytestmark = pytest.mark.usefixtures("one_thread")


def _data(toy, out, steps=4, **optim):
    stage = {"preset": "audio", "optim": {"lr": 1e-3, "batch_size": 4, "warmup_steps": 0, "max_steps": steps}}
    stage["optim"].update(optim)
    return {
        "output_dir": str(out),
        "model": "tiny",
        "tokenizer": str(toy),
        "train_data": str(toy / "pairs.jsonl"),
        "eval_fraction": 0.25,
        "log_every": 1,
        "show_progress": False,
        "stages": [stage],
    }


def test_config_changes_name_every_differing_key():
    saved = {
        "seed": 42,
        "log_every": 10,
        "stages": [{"name": "a", "optim": {"lr": 1e-5, "betas": [0.9, 0.99]}}],
    }
    current = {
        "seed": 42,
        "log_every": 1,
        "stages": [{"name": "a", "optim": {"lr": 1e-4, "betas": (0.9, 0.99)}}],
    }
    assert config_changes(saved, current) == {"stages[0].optim.lr": (1e-5, 1e-4)}  # log_every is neutral
    current["stages"].append({"name": "b"})
    assert config_changes(saved, current)["stages[1].name"] == ("<absent>", "b")


def test_an_option_added_later_at_its_unset_default_is_no_change():
    saved = {"stages": [{"name": "a", "optim": {"lr": 1e-5}}]}
    current = {"stages": [{"name": "a", "optim": {"lr": 1e-5}, "group_by": None}]}
    assert config_changes(saved, current) == {}
    current["stages"][0]["group_by"] = "facts.collection"
    assert config_changes(saved, current) == {"stages[0].group_by": ("<absent>", "facts.collection")}
    assert config_changes(current, saved) == {"stages[0].group_by": ("facts.collection", "<absent>")}


def test_packed_steps_are_no_change_of_the_result():
    # Packed and padded steps compute the same updates to float rounding: a run started before
    # the option existed, or with its other value, goes on; other stage keys still count.
    saved = {"stages": [{"name": "a", "contrastive": {"normalize": True}}]}
    current = {"stages": [{"name": "a", "contrastive": {"normalize": True, "packed": True}}]}
    assert config_changes(saved, current) == {}
    saved["stages"][0]["contrastive"]["packed"] = False
    assert config_changes(saved, current) == {}
    current["stages"][0]["contrastive"]["normalize"] = False
    assert config_changes(saved, current) == {"stages[0].contrastive.normalize": (True, False)}
    assert config_changes({"packed": 1}, {"packed": 2}) == {"packed": (1, 2)}  # only inside a stage


def test_resume_with_a_changed_config_is_refused_unless_allowed(toy, tmp_path):
    run = tmp_path / "run"
    assert train(config_from_dict(_data(toy, run)), stop_after=2) is None
    original = (run / "train_config.json").read_text()
    changed = config_from_dict(_data(toy, run, lr=5e-4, batch_size=8))
    with pytest.raises(InputError, match="differs") as info:
        train(changed, resume=True)
    assert "stages[0].optim.batch_size: 4 -> 8" in str(info.value)
    assert "stages[0].optim.lr: 0.001 -> 0.0005" in str(info.value) and "--allow-config-change" in str(
        info.value
    )
    assert (run / "train_config.json").read_text() == original
    assert [r["step"] for r in read_log(run / "log.jsonl", "train")] == [1, 2]  # not a step more

    # Settings that do not shape the result may change.
    quiet = {**_data(toy, run), "log_every": 2, "keep_checkpoints": 3}
    assert train(config_from_dict(quiet), resume=True, stop_after=1) is None

    assert train(changed, resume=True, allow_config_change=True) == run / "best"
    assert (run / "train_config.previous-1.json").read_text() != original  # the quiet change's file
    kept = json.loads((run / "train_config.previous-1.json").read_text())
    assert kept["stages"][0]["optim"]["lr"] == 1e-3
    assert json.loads((run / "train_config.json").read_text())["stages"][0]["optim"]["batch_size"] == 8
    (event,) = [r for r in read_log(run / "log.jsonl", "event") if r["event"] == "config-change"]
    assert event["changes"]["stages[0].optim.lr"] == [1e-3, 5e-4]
    assert event["previous_config"].endswith("train_config.previous-1.json")


def test_a_damaged_checkpoint_is_refused_naming_the_file_and_the_one_to_resume_from(toy, tmp_path):
    run = tmp_path / "run"
    config = config_from_dict({**_data(toy, run), "keep_checkpoints": 3})
    assert train(config, stop_after=1) is None
    assert train(config, resume=True, stop_after=1) is None
    checkpoints = run / "stages/01-audio/checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step_00000001", "step_00000002"]
    state = checkpoints / "step_00000002/trainer_state.pt"
    state.write_bytes(state.read_bytes()[:100])  # cut short: torch's own error was a traceback
    (checkpoints / "step_notes").mkdir()  # not a checkpoint, though named like one
    (checkpoints / "step_notes/trainer_state.pt").write_bytes(b"")
    with pytest.raises(ValueError) as info:
        train(config, resume=True)
    message = str(info.value)
    assert message.startswith(f"{state}: damaged checkpoint (")
    assert message.endswith(f"remove {state.parent} to resume from step_00000001")

    rng = checkpoints / "step_00000001/rng_rank0.pt"
    rng.write_text("garbage")
    shutil.rmtree(state.parent)
    with pytest.raises(ValueError, match="damaged checkpoint .*to start the stage again$"):
        train(config, resume=True)
    rng.unlink()
    with pytest.raises(ValueError, match="no RNG state for rank 0"):
        train(config, resume=True)


def test_stop_after_ends_exactly_at_a_stage_boundary(toy, tmp_path):
    # 12 training items, batch 4: a 3-step first stage; the budget of 3 must not start stage two.
    data = _data(toy, tmp_path / "run", steps=3)
    data["stages"].append({**data["stages"][0], "name": "second"})
    config = config_from_dict(data)
    assert train(config, stop_after=3) is None
    assert [(r["stage"], r["step"]) for r in read_log(tmp_path / "run/log.jsonl", "train")] == [
        ("audio", 1),
        ("audio", 2),
        ("audio", 3),
    ]
    assert not (tmp_path / "run/stages/02-second").exists()
    assert train(config, resume=True) == tmp_path / "run/best"


def _wait_for_step(log_path, step: int, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1][-3000:]
        if log_path.is_file() and any(r["step"] >= step for r in read_log(log_path, "train")):
            return
        time.sleep(0.01)
    raise AssertionError(f"the training process never reached step {step}")


@pytest.mark.slow
@pytest.mark.parametrize(
    "signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"]
)
def test_a_stop_signal_checkpoints_and_resume_matches_an_uninterrupted_run(toy, tmp_path, signum, status):
    steps = 60
    whole = tmp_path / "whole"
    train(config_from_dict({**_data(toy, whole, steps=steps), "save_every": 1000}))
    path = tmp_path / "parts.json"
    path.write_text(json.dumps({**_data(toy, tmp_path / "parts", steps=steps), "save_every": 1000}))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "clamp3.cli.main", "train", str(path)]
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_step(tmp_path / "parts/log.jsonl", 2, process)
        process.send_signal(signum)
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == status, err[-3000:]
    name = signal.Signals(signum).name
    assert f"{name}: finishing this step" in err and f"stopped by {name} after step" in err
    assert "continue with --resume" in err and "Traceback" not in err
    (checkpoint,) = (tmp_path / "parts/stages/01-audio/checkpoints").iterdir()
    stopped = int(checkpoint.name.split("_")[1])
    assert 2 <= stopped < steps, stopped
    assert [r["step"] for r in read_log(tmp_path / "parts/log.jsonl", "train")] == list(range(1, stopped + 1))

    train(config_from_dict({**_data(toy, tmp_path / "parts", steps=steps), "save_every": 1000}), resume=True)
    final = f"stages/01-audio/checkpoints/step_{steps:08d}/model/model.safetensors"
    a, b = load_file(whole / final), load_file(tmp_path / "parts" / final)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    losses = [
        [(r["step"], r["loss"]) for r in read_log(run / "log.jsonl", kind)]
        for run in (whole, tmp_path / "parts")
        for kind in ("train", "eval")
    ]
    assert losses[0] == losses[2] and losses[1] == losses[3]

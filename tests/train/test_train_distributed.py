"""Two gloo processes under torchrun train exactly like one process on the same global batch.

Comparable because (1) every rank builds the same global batch order and takes its slice,
and each item's augmentation generator depends on its global position only (text dropout
stays on), (2) model dropout is set to 0, since dropout masks are drawn per rank
(seed + rank) and cannot match one process's. What remains is float summation order
(different batch shapes per matmul), hence a tolerance instead of bitwise equality.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from clamp3 import Clamp3Model
from clamp3.config import load_preset
from clamp3.train import config_from_dict, train
from clamp3.train.logger import read_log
from clamp3.train.toy import write_toy_pairs


@pytest.fixture()
def run_config(tmp_path, tiny_tokenizer):
    write_toy_pairs(tmp_path / "data", n=16, feature_dim=32)
    tiny_tokenizer.save(tmp_path / "data")
    config = load_preset("tiny")
    for tower in (config.text, config.symbolic, config.audio):
        tower.encoder.dropout = tower.encoder.attention_dropout = 0.0
    torch.manual_seed(0)
    Clamp3Model(config).save_pretrained(tmp_path / "start")
    data = {
        "init_from": "start",
        "tokenizer": "data",
        "train_data": "data/pairs.jsonl",
        "eval_fraction": 0.25,
        "log_every": 1,
        "show_progress": False,
        "stages": [
            # 4 validation items in batches of 3: the last holds 1 item for 2 processes.
            {
                "preset": "audio",
                "optim": {"lr": 1e-3, "batch_size": 4, "epochs": 2, "warmup_steps": 2, "eval_batch_size": 3},
            }
        ],
    }
    return tmp_path, data


def _write(tmp_path, data, out):
    path = tmp_path / f"{out}.json"
    path.write_text(json.dumps({**data, "output_dir": out}))
    return path


def _torchrun(tmp_path, config_path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += ["-m", "clamp3.cli.main", "train", str(config_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_two_gloo_processes_match_one(run_config):
    tmp_path, data = run_config
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(config_from_dict({**data, "output_dir": "one"}, tmp_path))
    finally:
        torch.set_num_threads(threads)
    done = _torchrun(tmp_path, _write(tmp_path, data, "two"))
    # Rank 0 alone talks: one final line, one terminal line per evaluation.
    assert done.stdout.count("best model:") == 1
    assert done.stderr.count(": validation accuracy") == len(read_log(tmp_path / "two/log.jsonl", "eval"))

    for kind in ("train", "eval"):
        one = read_log(tmp_path / "one/log.jsonl", kind)
        two = read_log(tmp_path / "two/log.jsonl", kind)
        assert [r["step"] for r in one] == [r["step"] for r in two] and len(one) >= 2
        np.testing.assert_allclose([r["loss"] for r in two], [r["loss"] for r in one], rtol=0, atol=1e-5)
    start = load_file(tmp_path / "start/model.safetensors")
    a = load_file(tmp_path / "one/best/model.safetensors")
    b = load_file(tmp_path / "two/best/model.safetensors")
    # The parameter updates agree (observed relative difference ~1.5e-5 of the update norm).
    gap = torch.sqrt(sum(((b[k] - a[k]) ** 2).sum() for k in a))
    moved = torch.sqrt(sum(((a[k] - start[k]) ** 2).sum() for k in a))
    assert gap < 1e-3 * moved
    for key in a:
        # Attention key biases get a zero gradient in exact arithmetic (softmax ignores a shift
        # shared by all keys), so their gradient is rounding noise that Adam scales up to ~lr.
        if not key.endswith("attention.self.key.bias"):
            torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-4)
    assert (tmp_path / "two/stages/01-audio/checkpoints/step_00000006/rng_rank1.pt").is_file()


@pytest.mark.slow
def test_a_validation_set_smaller_than_the_number_of_processes(run_config):
    # One validation item for two processes: rank 1 holds none, so it runs a placeholder item
    # that must count for nothing (the batch dropped it, and the run died with KeyError 'loss').
    tmp_path, data = run_config
    lines = (tmp_path / "data/pairs.jsonl").read_text().splitlines()
    (tmp_path / "data/one.jsonl").write_text(lines[0] + "\n")
    stage = {"preset": "audio", "optim": {"lr": 1e-3, "batch_size": 4, "max_steps": 2, "warmup_steps": 0}}
    data = {**data, "eval_data": "data/one.jsonl", "eval_every": 1, "stages": [stage]}
    _torchrun(tmp_path, _write(tmp_path, data, "small"))
    evals = read_log(tmp_path / "small/log.jsonl", "eval")
    # A one-pair batch: loss 0 and accuracy 1; a counted placeholder would give log 2 and 1/2.
    assert [(r["step"], r["loss"], r["accuracy"]) for r in evals] == [(1, 0.0, 1.0), (2, 0.0, 1.0)]

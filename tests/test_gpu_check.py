"""The prepared GPU check (benchmarks/gpu_check.py) in its CPU smoke mode: every step runs on the
tiny preset, so the script a GPU session runs cannot rot between the sessions that have a GPU."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
STEPS = ("parity", "throughput", "mert", "train", "torchrun", "serve")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, parity_dir) -> dict:
    out = tmp_path_factory.mktemp("gpu_check")
    env = dict(os.environ, CLAMP3_PARITY_DIR=str(parity_dir))
    cmd = [sys.executable, str(SCRIPT), "--cpu-smoke", "--threads", "1", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (out / "gpu_check.txt").read_text().startswith("step")
    return json.loads((out / "gpu_check.json").read_text())


def test_every_step_ran_and_passed(smoke):
    assert smoke["mode"] == "cpu-smoke"
    for step in STEPS:
        assert smoke[step]["ok"] is True, (step, smoke[step].get("error"))
        assert smoke[step]["seconds"] > 0


def test_parity_and_half_precision_sections(smoke):
    fp32 = smoke["parity"]["fp32"]
    assert set(fp32) == {"text", "symbolic", "audio"}
    assert all(row["max_abs_diff"] <= 1e-4 for row in fp32.values())
    for dtype in ("float16", "bfloat16"):
        for row in smoke["parity"]["half"][dtype].values():
            assert row["finite"] and row["min_cosine"] >= 0.999


def test_throughput_has_official_and_library_paths_with_peak_shares(smoke):
    tp = smoke["throughput"]
    assert tp["gemm_peak_tflops"]["float32"] > 0
    for modality, row in tp["towers"].items():
        paths = row["paths"]
        assert "official_fp32" in paths and any(k.startswith("library_bfloat16") for k in paths), modality
        for figures in paths.values():
            assert figures["items_per_s"] > 0 and 0 < figures["share_of_peak"] < math.inf
        assert row["real_tokens"] > row["items"]


def test_training_torchrun_and_service_figures(smoke):
    run = smoke["train"]["runs"][0]
    assert run["losses_finite"] and run["steps_per_s"] > 0
    packing = smoke["train"]["packing"]  # the packed training default against padded steps
    assert not packing["padded"]["packed"] and packing["packed"]["packed"]
    assert 0.2 < packing["real_token_share"] < 0.9 and run["real_token_share"] == 1.0
    assert packing["packed_speedup"] > 0 and packing["packed"]["losses_finite"]
    ddp = smoke["torchrun"]["ddp"]
    assert ddp["backend"] == "gloo" and ddp["world_size"] == 1 and ddp["all_reduce_ok"]
    assert smoke["torchrun"]["train_loop"]["logged_steps"] == 6
    assert smoke["serve"]["errors"] == 0 and smoke["serve"]["p50_ms"] > 0
    assert smoke["mert"]["windows_per_s"]["float32_batch1"] > 0


def test_recommended_defaults_come_from_the_measured_figures(smoke):
    rec = smoke["recommended"]
    for modality in ("text", "symbolic", "audio"):
        paths = smoke["throughput"]["towers"][modality]["paths"]
        name = f"library_{rec[modality]['dtype']}_batch{rec[modality]['batch_size']}"
        fastest = min((k for k in paths if k.startswith("library_")), key=lambda k: paths[k]["seconds"])
        assert name == fastest
    assert rec["mert_batch_size"] == smoke["mert"]["best_fp32_batch"]

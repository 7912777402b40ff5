"""The MERT, training, torchrun and service steps of ``gpu_check.py`` (see that file)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gpu_steps import Check, sync, timed

HERE = Path(__file__).resolve().parent
# The smoke MERT keeps MERT-v1-95M's convolution stack (75 frames/s at 24 kHz) at toy widths.
TINY_MERT = {
    "hidden_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "conv_dim": [8] * 7,
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
}


# ----------------------------------------------------------------------------- MERT
def mert_extractor(check: Check, batch_size: int, dtype: torch.dtype = torch.float32):
    """MERT-v1-95M (the parity config) with the deterministic recipe weights, or its toy twin."""
    from clamp3.audio import MertExtractor
    from clamp3.audio.mert import build_mert_model, load_mert_state
    from clamp3.testing import deterministic_state_dict, read_key_list

    config = json.loads((check.parity_dir / "keys" / "mert_v1_95m_config.json").read_text())
    if check.smoke:
        config.update(TINY_MERT)
        model = build_mert_model(config)
        keys = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    else:
        model = build_mert_model(config)
        keys = read_key_list(check.parity_dir / "keys" / "mert_v1_95m_checkpoint.json")
    load_mert_state(model, deterministic_state_dict(keys), origin="recipe weights")
    return MertExtractor(model, device=check.device, dtype=dtype, batch_size=batch_size)


def step_mert(check: Check) -> dict:
    """Windows/s of 5-s windows: one window per forward vs batched, fp32 and bf16."""
    seconds = 1 if check.smoke else 5
    n_windows = 4 if check.smoke else 64
    rng = np.random.default_rng(0)
    windows = rng.standard_normal((n_windows, 24000 * seconds)).astype(np.float32)
    extractor = mert_extractor(check, 1)
    reference = extractor.encode_windows(windows[:2])
    rows: dict[str, Any] = {}
    for dtype_name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        extractor.model.to(dtype)
        extractor.dtype = dtype
        for batch in (1, 2) if check.smoke else (1, 8, 32):

            def run(b: int = batch) -> None:
                for lo in range(0, n_windows, b):
                    extractor.encode_windows(windows[lo : lo + b])

            rows[f"{dtype_name}_batch{batch}"] = n_windows / timed(run, check.device)
        got = extractor.encode_windows(windows[:2])
        rows[f"{dtype_name}_max_abs_diff_vs_fp32"] = float(np.abs(got - reference).max())
    best = max((k for k in rows if k.startswith("float32_batch")), key=rows.__getitem__)
    return {
        "window_seconds": seconds,
        "windows": n_windows,
        "windows_per_s": rows,
        "best_fp32_batch": int(best.rsplit("batch", 1)[1]),
        "batched_speedup_fp32": rows[best] / rows["float32_batch1"],
        "ok": all(np.isfinite(v) for v in rows.values()),
    }


# ----------------------------------------------------------------------------- training
def mixed_lengths(data, gen: torch.Generator):
    """``data`` with prefix masks of random lengths (1/8 of the segment to all of it, uniform):
    the length mix packed steps are for. The ids past a mask's end stay; both forwards ignore them."""
    for mask in (data.text_mask, data.music_mask):
        batch, length = mask.shape
        ends = torch.randint(max(1, length // 8), length + 1, (batch, 1), generator=gen)
        mask.copy_((torch.arange(length)[None, :] < ends).to(mask.dtype))
    return data


def contrastive_steps(
    preset: str,
    batch: int,
    device: torch.device,
    steps: int,
    ddp: bool = False,
    packed: bool = False,
    mixed: bool = False,
) -> dict:
    """Optimizer steps of the text + symbolic stage with bf16 autocast on full-length batches
    (``mixed``: the lengths of :func:`mixed_lengths`), padded or ``packed``."""
    from train_speed import full_length_batch

    from clamp3 import Clamp3Model
    from clamp3.config import load_preset
    from clamp3.train.config import stage_from_dict
    from clamp3.train.loop import _optimizer
    from clamp3.train.loss import InfoNCELoss
    from clamp3.train.task import ContrastiveTask, freeze, set_train_mode

    stage = stage_from_dict("symbolic")
    torch.manual_seed(0)
    config = load_preset(preset)
    model = Clamp3Model(config).to(device)
    task = ContrastiveTask(model, "symbolic", InfoNCELoss(), packed=packed).to(device)
    freeze(model, stage.train)
    set_train_mode(task, stage.train)
    wrapped: torch.nn.Module = task
    if ddp:
        wrapped = torch.nn.parallel.DistributedDataParallel(
            task, device_ids=[device.index] if device.type == "cuda" else None
        )
    optimizer = _optimizer(task, stage)
    data = full_length_batch(config, stage, batch, torch.Generator().manual_seed(1))
    if mixed:
        data = mixed_lengths(data, torch.Generator().manual_seed(2))
    real = (int(data.text_mask.sum()) + int(data.music_mask.sum())) / (
        data.text_mask.numel() + data.music_mask.numel()
    )
    data = data.to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times, losses = [], []
    for i in range(2 + steps):
        start = time.perf_counter()
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            loss = wrapped(data)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        losses.append(float(loss.detach()))
        if i >= 2:
            times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {
        "batch": batch,
        "packed": packed,
        "real_token_share": round(real, 3),
        "steps_per_s": len(times) / sum(times),
        "peak_memory_gib": peak,
        "losses_finite": all(np.isfinite(losses)),
        "first_loss": losses[0],
        "last_loss": losses[-1],
    }


def step_train(check: Check) -> dict:
    """The largest of batch 64 / 128 / 256 that fits, and each one's steps/s and memory."""
    runs = []
    for batch in (8,) if check.smoke else (64, 128, 256):
        try:
            runs.append(contrastive_steps(check.preset, batch, check.device, 2 if check.smoke else 5))
        except torch.OutOfMemoryError as exc:
            runs.append({"batch": batch, "error": f"out of memory: {str(exc).splitlines()[0]}"})
            break
        finally:
            if check.device.type == "cuda":
                torch.cuda.empty_cache()
    return {
        "stage": "symbolic (text + symbolic), bf16 autocast",
        "runs": runs,
        "packing": packed_vs_padded(check),
        "ok": any("steps_per_s" in r and r["losses_finite"] for r in runs),
    }


def packed_vs_padded(check: Check) -> dict:
    """Training steps on mixed lengths at batch 64, padded and packed (the training default,
    measured on CPUs only until this runs): steps/s of each and their ratio."""
    batch, steps = (8, 2) if check.smoke else (64, 5)
    out: dict[str, Any] = {"batch": batch}
    try:
        for packed in (False, True):
            run = contrastive_steps(check.preset, batch, check.device, steps, packed=packed, mixed=True)
            out["packed" if packed else "padded"] = run
    except torch.OutOfMemoryError as exc:
        return {**out, "error": f"out of memory: {str(exc).splitlines()[0]}"}
    finally:
        if check.device.type == "cuda":
            torch.cuda.empty_cache()
    out["real_token_share"] = out["packed"]["real_token_share"]
    out["packed_speedup"] = out["packed"]["steps_per_s"] / out["padded"]["steps_per_s"]
    return out


def ddp_child(device: str, preset: str, batch: int) -> dict:
    """Inside ``torchrun --nproc_per_node 1``: join the group (NCCL on GPUs), all-reduce, train."""
    import torch.distributed as dist

    dev = torch.device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    try:
        value = torch.full((4,), float(dist.get_rank() + 1), device=dev)
        dist.all_reduce(value)
        out = contrastive_steps(preset, batch, dev, steps=2, ddp=True)
        out.update(
            backend=dist.get_backend(),
            world_size=dist.get_world_size(),
            all_reduce_ok=bool((value == 1).all()),
        )
        return out
    finally:
        dist.destroy_process_group()


def step_torchrun(check: Check) -> dict:
    """A 1-process torchrun of the DDP step, then the real ``clamp3 train`` loop through torchrun."""
    batch = 4 if check.smoke else 64
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"]
    child = cmd + [
        str(HERE / "gpu_check.py"),
        "--ddp-child",
        "--device",
        str(check.device),
        "--preset",
        check.preset,
        "--batch",
        str(batch),
    ]
    done = subprocess.run(child, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        return {"ok": False, "error": done.stderr.strip()[-2000:]}
    ddp = json.loads(done.stdout.strip().splitlines()[-1])
    loop = train_loop(check, cmd)
    return {
        "ddp": ddp,
        "train_loop": loop,
        "ok": ddp["all_reduce_ok"] and ddp["losses_finite"] and loop["ok"],
    }


def train_loop(check: Check, torchrun: list[str]) -> dict:
    """``clamp3 train`` on the toy set (tiny preset, bf16) through torchrun on the device."""
    from clamp3.tokenizer import train_tokenizer
    from clamp3.train.toy import toy_text, write_toy_pairs

    root = check.workdir / "train_loop"
    jsonl = write_toy_pairs(root / "data", n=32)
    train_tokenizer([t for i in range(32) for t in toy_text(i)] * 3, vocab_size=300).save(root / "data")
    config = {
        "output_dir": str(root / "run"),
        "model": "tiny",
        "tokenizer": str(root / "data"),
        "train_data": str(jsonl),
        "eval_fraction": 0,
        "device": str(check.device),
        "precision": "bf16",
        "log_every": 1,
        "show_progress": False,
        "stages": [{"preset": "symbolic", "optim": {"lr": 1e-3, "batch_size": 8, "max_steps": 6}}],
    }
    (root / "config.json").write_text(json.dumps(config))
    start = time.perf_counter()
    done = subprocess.run(
        torchrun + ["-m", "clamp3.cli.main", "train", str(root / "config.json")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        return {"ok": False, "error": done.stderr.strip()[-2000:]}
    from clamp3.train.logger import read_log

    losses = [r["loss"] for r in read_log(root / "run" / "log.jsonl", "train")]
    return {
        "ok": len(losses) == 6 and all(np.isfinite(losses)),
        "wall_s": wall,
        "precision": "bf16",
        "logged_steps": len(losses),
    }


# ----------------------------------------------------------------------------- service
def step_serve(check: Check) -> dict:
    """p50/p95 of sequential text queries to ``clamp3 serve --device DEVICE`` over 100k items."""
    import serve_load

    items = 2000 if check.smoke else 100_000
    model_dir, index_dir, media = serve_load.build(check.workdir / "serve", check.preset, items)
    port = serve_load.free_port()
    log = check.workdir / "serve.log"
    server = serve_load.start_server(
        model_dir, index_dir, media, port, threads=0, log=log, extra=["--device", str(check.device)]
    )
    base = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(serve_load.wait_ready(base, server))
        texts = serve_load.queries(20 if check.smoke else 200)
        asyncio.run(serve_load.run_load(base, texts[:5], concurrency=1))  # warm-up
        result = asyncio.run(serve_load.run_load(base, texts, concurrency=1))
    finally:
        serve_load.stop_server(server)
    result.update(items=items, device=str(check.device), ok=result["errors"] == 0)
    return result

"""Training speed and peak memory on this machine, tiny and full-size presets side by side.

Each case runs in a fresh subprocess (so its peak RSS is its own) and times optimizer steps
(forward, backward, AdamW update) of the real task objects on random-initialised models:

- ``*-symbolic``: the ``symbolic`` stage (text + symbolic towers learn), every item at the
  full segment length (text 128 tokens, 512 patches for the official sizes): the worst case;
- ``*-audio-frozen``: the ``audio-text-frozen`` stage (only the audio tower learns; 128 rows);
- ``*-m3``: M3 pre-training (encoder + 3-layer decoder, 45 % of 512 patches rebuilt);
- ``tiny-loop``: the whole ``clamp3.train.train`` loop (data loading, logging, checkpoint at
  the end) on the synthetic toy set, for the loop's own overhead.

Usage: python benchmarks/train_speed.py [--threads 2] [--full-steps 2] [--skip-full]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from clamp3.preprocess.patches import PATCH_SIZE

CASES = {
    # name: (preset, stage preset, batch size)
    "tiny-symbolic": ("tiny", "symbolic", 8),
    "tiny-audio-frozen": ("tiny", "audio-text-frozen", 8),
    "tiny-m3": ("tiny", "m3", 8),
    "saas-symbolic": ("saas", "symbolic", 2),
    "saas-audio-frozen": ("saas", "audio-text-frozen", 2),
    "m3-m3": ("m3", "m3", 2),
}


def full_length_batch(config, stage, batch_size: int, gen: torch.Generator):
    """A full-length synthetic batch for the stage's task."""
    from clamp3.train.data import PairBatch
    from clamp3.train.m3 import PatchBatch

    sym = config.tower("symbolic")
    if stage.task == "m3":
        n = sym.segment_length
        patches = torch.randint(4, 127, (batch_size, n, PATCH_SIZE), generator=gen)
        patches[:, :, 0] = 1
        selected = torch.rand(batch_size, n, generator=gen) < 0.45
        ones = torch.ones(batch_size, n, dtype=torch.long)
        return PatchBatch(patches.clone(), ones, selected, patches)
    text = config.tower("text")
    ids = torch.randint(5, min(text.vocab_size, 1000), (batch_size, text.segment_length), generator=gen)
    music_cfg = config.tower(stage.modality)
    length = music_cfg.segment_length
    if stage.modality == "symbolic":
        music = torch.randint(4, 127, (batch_size, length, PATCH_SIZE), generator=gen)
    else:
        music = torch.randn(batch_size, length, music_cfg.feature_dim, generator=gen)
    ones = torch.ones(batch_size, length, dtype=torch.long)
    return PairBatch(ids, torch.ones_like(ids), music, ones)


def run_case(name: str, steps: int, warmup: int) -> dict:
    from clamp3 import Clamp3Model
    from clamp3.config import load_preset
    from clamp3.train.config import stage_from_dict
    from clamp3.train.loop import _optimizer
    from clamp3.train.loss import InfoNCELoss
    from clamp3.train.m3 import M3Task, build_decoder, m3_model_config
    from clamp3.train.task import ContrastiveTask, freeze, set_train_mode

    preset, stage_name, batch_size = CASES[name]
    stage = stage_from_dict(stage_name)
    torch.manual_seed(0)
    config = load_preset(preset)
    if stage.task == "m3":
        config = m3_model_config(config)
        model = Clamp3Model(config)
        task = M3Task(model, build_decoder(config.tower("symbolic")))
    else:
        model = Clamp3Model(config)
        task = ContrastiveTask(model, stage.modality, InfoNCELoss())
    freeze(model, stage.train)
    trainable = sum(p.numel() for p in task.parameters() if p.requires_grad)
    optimizer = _optimizer(task, stage)
    set_train_mode(task, stage.train)
    batch = full_length_batch(config, stage, batch_size, torch.Generator().manual_seed(1))
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        task(batch)["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return {
        "case": name,
        "batch": batch_size,
        "trainable_M": round(trainable / 1e6, 3),
        "steps_per_s": round(len(times) / sum(times), 3),
        "s_per_step": round(sum(times) / len(times), 3),
        "peak_rss_GB": round(peak_rss_bytes() / 1e9, 2),
    }


def peak_rss_bytes() -> int:
    """Peak resident memory of this process (VmHWM). Unlike ``ru_maxrss`` it starts afresh at
    exec, so it does not report the size of the parent that launched this case."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def run_loop(steps: int) -> dict:
    """The whole training loop on the toy set (tiny preset, symbolic stage, batch 8)."""
    from clamp3.tokenizer import train_tokenizer
    from clamp3.train import config_from_dict, train
    from clamp3.train.logger import read_log
    from clamp3.train.toy import toy_text, write_toy_pairs

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        jsonl = write_toy_pairs(root / "data", n=64)
        texts = [t for i in range(64) for t in toy_text(i)] * 3
        train_tokenizer(texts, vocab_size=300).save(root / "data")
        stage = {"preset": "symbolic", "optim": {"lr": 1e-3, "batch_size": 8, "max_steps": steps}}
        config = config_from_dict(
            {
                "output_dir": str(root / "run"),
                "model": "tiny",
                "tokenizer": str(root / "data"),
                "train_data": str(jsonl),
                "eval_fraction": 0,
                "save_every": 10**6,
                "log_every": 1,
                "show_progress": False,
                "stages": [stage],
            }
        )
        start = time.perf_counter()
        train(config)
        wall = time.perf_counter() - start
        seconds = [r["seconds"] for r in read_log(root / "run/log.jsonl", "train")]
    per_step = (seconds[-1] - seconds[4]) / (len(seconds) - 5)  # after 5 warm-up steps
    return {
        "case": "tiny-loop",
        "batch": 8,
        "trainable_M": None,
        "steps_per_s": round(1 / per_step, 3),
        "s_per_step": round(per_step, 3),
        "peak_rss_GB": round(peak_rss_bytes() / 1e9, 2),
        "wall_s_incl_setup": round(wall, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tiny-steps", type=int, default=30)
    parser.add_argument("--full-steps", type=int, default=2)
    parser.add_argument("--skip-full", action="store_true")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case, print JSON
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.case:
        if args.case == "tiny-loop":
            result = run_loop(args.tiny_steps)
        else:
            full = not args.case.startswith("tiny")
            steps = args.full_steps if full else args.tiny_steps
            result = run_case(args.case, steps, warmup=1 if full else 3)
        print(json.dumps(result))
        return
    names = [n for n in CASES if not (args.skip_full and not n.startswith("tiny"))]
    names.insert(3, "tiny-loop")
    print(f"torch {torch.__version__}, {args.threads} threads, float32 on CPU")
    header = f"{'case':20s} {'batch':>5s} {'train M':>8s} {'steps/s':>9s} {'s/step':>8s} {'peak RSS GB':>12s}"
    print(header)
    for name in names:
        cmd = [sys.executable, __file__, "--case", name, "--threads", str(args.threads)]
        cmd += ["--tiny-steps", str(args.tiny_steps), "--full-steps", str(args.full_steps)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{name:20s} failed: {done.stderr.strip().splitlines()[-1]}")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        trainable = "-" if r["trainable_M"] is None else f"{r['trainable_M']:.2f}"
        print(
            f"{name:20s} {r['batch']:5d} {trainable:>8s} {r['steps_per_s']:9.3f} "
            f"{r['s_per_step']:8.3f} {r['peak_rss_GB']:12.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()

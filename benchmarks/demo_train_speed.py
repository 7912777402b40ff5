"""The demo's training stages with and without this package's two speed-ups, side by side.

    python benchmarks/demo_train_speed.py runs/demo [--steps 200] [--repeats 2] [--threads 2]

Reuses a finished demo folder's corpus, tokenizer and M3 encoder (``clamp3 demo`` made them).

- Packing: each contrastive stage of the demo's recipe (text–audio, text–symbolic) is trained
  ``--steps`` steps from the same start with ``contrastive.packed`` true (the default: the
  towers run on the batch's real tokens, :mod:`clamp3.towers.packed`) and false (the
  transformers forward on the padded batch, as the official code). Printed: the share of real
  tokens in the batches (text, music), seconds per step of each (median and range over the
  repeats, from the training log: steps only, no evaluation, over the second half of the steps,
after the first epoch has patched every score once), their ratio, and the largest
  difference between the two runs' logged losses (the same batches, so float rounding only;
  the demo recipe has no dropout).
- M3 decoder activation: the demo's M3 stage (50 steps) with the decoder's GELU as torch's
  fused kernel (the default) and as transformers' ``gelu_new`` formula (the official's):
  wall seconds of the whole stage and the largest difference of the logged losses.

Which variant goes first alternates over the ``--repeats``. Runs go to ``DEMO-train-speed/``
(deleted first). The figures of docs/train.md and the README's training rows come from here.
"""

from __future__ import annotations

import argparse
import collections
import copy
import json
import shutil
import statistics
import time
from pathlib import Path

import torch

import clamp3.train.task as task_module
from clamp3.demo.pipeline import DEFAULT_THREADS, DemoOptions, demo_stages, run_config
from clamp3.train import train

TOKENS: collections.Counter = collections.Counter()


def count_tokens() -> None:
    """Count real and padded tokens of every training batch (wraps the task's forward)."""
    forward = task_module.ContrastiveTask.forward

    def counting(self, batch, rows=None):
        if self.training:
            TOKENS["text"] += int(batch.text_mask.sum())
            TOKENS["text_padded"] += batch.text_mask.numel()
            TOKENS["music"] += int(batch.music_mask.sum())
            TOKENS["music_padded"] += batch.music_mask.numel()
        return forward(self, batch, rows)

    task_module.ContrastiveTask.forward = counting


def run_stage(demo: Path, root: Path, index: int, packed: bool, steps: int, tag: str) -> tuple[float, list]:
    """Train stage ``index`` of the recipe alone for ``steps`` steps -> (s per step, losses)."""
    stage = copy.deepcopy(demo_stages(DemoOptions())[1][index])
    stage.optim.max_steps, stage.optim.warmup_steps = steps, max(1, steps // 10)
    stage.contrastive.packed = packed
    work = root / tag
    work.mkdir(parents=True)
    for part in ("corpus", "tokenizer"):
        (work / part).symlink_to((demo / part).resolve())
    start = {"tokenizer": str(work / "tokenizer")}
    if stage.modality == "symbolic":
        start["init_symbolic_from"] = str((demo / "train" / "m3" / "best").resolve())
    config = run_config(work, "align", [stage], DemoOptions(show_progress=False), **start)
    train(config)
    rows = [json.loads(line) for line in open(work / "train" / "align" / "log.jsonl", encoding="utf-8")]
    trained = [r for r in rows if r["kind"] == "train"]
    # The second half only: in the first epoch every score is patched on its first visit.
    half = min(trained, key=lambda r: abs(r["step"] - steps // 2))
    per_step = (trained[-1]["seconds"] - half["seconds"]) / (trained[-1]["step"] - half["step"])
    return per_step, [r["loss"] for r in trained]


def run_m3(demo: Path, root: Path, official_gelu: bool, tag: str) -> tuple[float, list]:
    """The demo's M3 stage from scratch -> (wall seconds of ``train``, logged losses)."""
    from transformers.activations import ACT2FN

    from clamp3.train import initialization

    build = initialization.build_decoder  # where the stage builds its decoder

    def with_formula(*args, **kwargs):
        decoder = build(*args, **kwargs)
        for block in decoder.base.transformer.h:
            block.mlp.act = ACT2FN["gelu_new"]
        return decoder

    work = root / tag
    work.mkdir(parents=True)
    for part in ("corpus", "tokenizer"):
        (work / part).symlink_to((demo / part).resolve())
    config = run_config(work, "m3", demo_stages(DemoOptions())[0], DemoOptions(show_progress=False))
    initialization.build_decoder = with_formula if official_gelu else build
    try:
        began = time.perf_counter()
        train(config)
        seconds = time.perf_counter() - began
    finally:
        initialization.build_decoder = build
    rows = [json.loads(line) for line in open(work / "train" / "m3" / "log.jsonl", encoding="utf-8")]
    return seconds, [r["loss"] for r in rows if r["kind"] == "train"]


def compare_m3(demo: Path, root: Path, repeats: int) -> None:
    seconds: dict[bool, list[float]] = {True: [], False: []}
    losses: dict[bool, list] = {}
    for repeat in range(repeats):
        for official in (False, True) if repeat % 2 == 0 else (True, False):
            tag = f"m3-{'gelu_new' if official else 'fused'}-{repeat}"
            wall, losses[official] = run_m3(demo, root, official, tag)
            seconds[official].append(wall)
    print(f"M3 stage (50 steps) x {repeats} repeats:")
    for official, label in ((True, "gelu_new formula"), (False, "fused tanh GELU")):
        values = seconds[official]
        print(f"  {label:17s} {statistics.median(values):.1f} s (range {min(values):.1f}-{max(values):.1f})")
    ratio = statistics.median(seconds[False]) / statistics.median(seconds[True])
    gap = max(abs(a - b) for a, b in zip(losses[True], losses[False], strict=True))
    print(f"  fused / formula {ratio:.3f}; largest logged-loss difference {gap:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo", type=Path, help="a finished clamp3 demo work folder")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    count_tokens()
    root = args.demo.parent / f"{args.demo.name}-train-speed"
    shutil.rmtree(root, ignore_errors=True)
    for index, name in enumerate(("text-audio", "text-symbolic")):
        seconds: dict[bool, list[float]] = {True: [], False: []}
        losses: dict[bool, list] = {}
        TOKENS.clear()
        for repeat in range(args.repeats):
            for packed in (True, False) if repeat % 2 == 0 else (False, True):
                tag = f"{name}-{'packed' if packed else 'padded'}-{repeat}"
                per_step, losses[packed] = run_stage(args.demo, root, index, packed, args.steps, tag)
                seconds[packed].append(per_step)
        real_text = TOKENS["text"] / TOKENS["text_padded"]
        real_music = TOKENS["music"] / TOKENS["music_padded"]
        print(
            f"{name}: {args.steps} steps x {args.repeats} repeats, {args.threads} threads; "
            f"real tokens: text {real_text:.1%}, music {real_music:.1%}"
        )
        for packed in (False, True):
            values = seconds[packed]
            label = "packed" if packed else "padded"
            spread = f"range {min(values):.4f}-{max(values):.4f}"
            print(f"  {label:7s} {statistics.median(values):.4f} s/step ({spread})")
        ratio = statistics.median(seconds[True]) / statistics.median(seconds[False])
        gap = max(abs(a - b) for a, b in zip(losses[True], losses[False], strict=True))
        print(f"  packed / padded {ratio:.3f}; largest logged-loss difference {gap:.2e}")
    compare_m3(args.demo, root, args.repeats)


if __name__ == "__main__":
    main()

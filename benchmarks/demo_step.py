"""One text–symbolic training step of the demo's mini model: threads x dropout, and the loader.

    python benchmarks/demo_step.py runs/demo [--batches 20]

On a finished ``clamp3 demo`` folder (its corpus and tokenizer), side by side in one process:

- data: the time to build one batch of 32 pairs (reading, text dropout, tokenizing, patching,
  collating) on first visits, then on the next batches with the loader's patch cache warm;
- step: forward, backward and AdamW update on the same prepared batches (so data time is not
  in it), for 1 and 2 torch threads, each with dropout 0.1 in every tower (the ``mini``
  preset's earlier setting) and without dropout (today's), from the same random start.

The figures in docs/demo.md ("--threads") and the README's Changed entry come from this script.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from clamp3.demo.pipeline import DemoOptions, demo_stages, run_config
from clamp3.train.data import BatchPlan
from clamp3.train.distributed import init_distributed
from clamp3.train.runner import build_job


class _NoLog:
    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def text_symbolic_job(work: Path, scratch: Path):
    """The demo's text–symbolic stage job (model, task, training source) on ``work``'s corpus."""
    options = DemoOptions(workdir=work, show_progress=False)
    _, align = demo_stages(options)
    config = run_config(work, "bench", align, options, tokenizer=str(work / "tokenizer"))
    return build_job(config, align[0], scratch, init_distributed("cpu"), _NoLog(), None, None, {})


def batches(source, first: int, count: int):
    plan = BatchPlan(len(source), 32, 0, 1)
    steps = range(first, first + count)
    return [source.collate([source.item(i, rng) for i, rng in plan.local_items(k)]) for k in steps]


def set_dropout(task: torch.nn.Module, p: float) -> None:
    """Dropout ``p`` on every dropout module, attention probabilities included."""
    for module in task.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = p
        if hasattr(module, "dropout_prob"):
            module.dropout_prob = p


def step_seconds(task, state, prepared, threads: int, dropout: float) -> float:
    task.load_state_dict(state)
    set_dropout(task, dropout)
    task.train()
    torch.set_num_threads(threads)
    optimizer = torch.optim.AdamW([p for p in task.parameters() if p.requires_grad], lr=1e-4)

    def step(batch):
        task(batch)["loss"].backward()
        optimizer.step()
        optimizer.zero_grad()

    for batch in prepared[:3]:
        step(batch)
    began = time.perf_counter()
    for batch in prepared[3:]:
        step(batch)
    return (time.perf_counter() - began) / len(prepared[3:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo", type=Path, help="a clamp3 demo work folder with corpus/ and tokenizer/")
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        job = text_symbolic_job(args.demo, Path(scratch))
        torch.set_num_threads(1)
        began = time.perf_counter()
        prepared = batches(job.train_source, 0, args.batches)
        first = (time.perf_counter() - began) / args.batches
        began = time.perf_counter()
        batches(job.train_source, args.batches, 2 * args.batches)
        warm = (time.perf_counter() - began) / (2 * args.batches)
        print(f"data, one batch of 32: {first * 1000:.0f} ms on first visits, {warm * 1000:.0f} ms next")
        state = {k: v.clone() for k, v in job.task.state_dict().items()}
        rows = [(t, d, step_seconds(job.task, state, prepared, t, d)) for t in (1, 2) for d in (0.1, 0.0)]
    base = rows[0][2]
    print(f"{'threads':>7}  {'dropout':>7}  {'s/step':>7}  {'x first':>7}")
    for threads, dropout, seconds in rows:
        print(f"{threads:>7}  {dropout:>7}  {seconds:7.3f}  {seconds / base:7.2f}")


if __name__ == "__main__":
    main()

"""Weight prepacking of an exported text tower: open + first query against later queries (issue 17).

ONNX Runtime repacks matrix weights into its kernels' layout when a session opens. ``clamp3
search`` runs one query per process, so it opens its sessions without (``one_shot``); services
and batch jobs keep the default. This script opens the text tower of each export given both
ways, in one process, alternating, and prints the open time, the first query and the p50 of
later ones (one thread, a query of ``--tokens`` token ids), medians over ``--rounds``.

    .venv/bin/python benchmarks/onnx_prepack.py /tmp/onnx-bench/onnx-fp32 /tmp/onnx-bench/onnx-int8
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from clamp3.onnx.runtime import OnnxModel


def measure(export: Path, one_shot: bool, tokens: int, reps: int) -> tuple[float, float, float]:
    """(open s, first query s, p50 of ``reps`` later queries s) for a fresh model object."""
    model = OnnxModel.from_pretrained(export, threads=1, one_shot=one_shot)
    ids = [0, *np.random.default_rng(0).integers(5, 1000, tokens - 2).tolist(), 2]
    start = time.perf_counter()
    model.require("text")
    opened = time.perf_counter() - start
    times = []
    for _ in range(reps + 1):
        start = time.perf_counter()
        model.embed_text_ids([ids])
        times.append(time.perf_counter() - start)
    return opened, times[0], statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("exports", nargs="+", type=Path, help="export-onnx directories")
    parser.add_argument("--tokens", type=int, default=17)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"{'export':<28}{'sessions':<14}{'open s':>8}{'first s':>9}{'p50 s':>9}{'open+first':>12}")
    for export in args.exports:
        rows: dict[bool, list[tuple[float, float, float]]] = {False: [], True: []}
        for _ in range(args.rounds):  # alternating, so a change of load hits both alike
            for one_shot in (False, True):
                rows[one_shot].append(measure(export, one_shot, args.tokens, args.reps))
        for one_shot, runs in rows.items():
            opened, first, p50 = (statistics.median(r[i] for r in runs) for i in range(3))
            label = "one-shot" if one_shot else "prepacked"
            print(f"{export.name:<28}{label:<14}{opened:>8.3f}{first:>9.3f}{p50:>9.4f}{opened + first:>12.3f}")


if __name__ == "__main__":
    main()

"""Where a demo model's text -> music ranking goes wrong, from a finished ``clamp3 benchmark demo``.

    python benchmarks/demo_misses.py BENCH_OUT CORPUS [--kind sheet] [--lang en] [--split validation]

BENCH_OUT is the ``--out`` folder of ``clamp3 benchmark demo`` (its ``embeddings/<label>/``).
Prints the MRR, the MRR when each query is ranked only against the pieces of its own collection,
and, for the queries whose piece was not first, how often the first result shares the
collection, key tonic, mode and meter (from the corpus facts). ``docs/demo.md`` (Recipe
experiments, 2026-12-03) quotes these figures.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def load(folder: Path) -> tuple[list[str], np.ndarray]:
    ids = sorted(p.stem for p in folder.glob("*.npy"))
    vectors = np.stack([np.load(folder / f"{i}.npy").reshape(-1) for i in ids])
    return ids, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", type=Path)
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--kind", default="sheet")
    parser.add_argument("--lang", default="en")
    parser.add_argument("--split", default="validation")
    args = parser.parse_args()
    label = next(p for p in (args.bench / "embeddings").iterdir() if p.is_dir())
    query_ids, queries = load(label / f"text_{args.lang}")
    ids, candidates = load(label / args.kind)
    lines = (args.corpus / f"m4rag_{args.split}.jsonl").read_text(encoding="utf-8").splitlines()
    facts = {r["id"]: r["facts"] for r in map(json.loads, lines)}
    scores = queries @ candidates.T
    shared = dict.fromkeys(("collection", "key_tonic", "key_mode", "meter"), 0)
    reciprocal, within, misses = [], [], 0
    for row, piece in enumerate(query_ids):
        order = [ids[j] for j in np.argsort(-scores[row], kind="stable")]
        reciprocal.append(1 / (order.index(piece) + 1))
        own = [i for i in order if facts[i]["collection"] == facts[piece]["collection"]]
        within.append(1 / (own.index(piece) + 1))
        if order[0] != piece:
            misses += 1
            for key in shared:
                shared[key] += facts[order[0]][key] == facts[piece][key]
    print(f"MRR {np.mean(reciprocal):.3f}, within-collection MRR {np.mean(within):.3f}")
    print(f"first result wrong for {misses} of {len(query_ids)}; it shares " + ", ".join(
        f"{key} {count}" for key, count in shared.items()))


if __name__ == "__main__":
    main()

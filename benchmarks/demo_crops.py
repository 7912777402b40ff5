"""How often the demo's training items are longer than the mini model's segments (and so cropped).

    python benchmarks/demo_crops.py runs/demo [--seed 0]

On a finished ``clamp3 demo`` folder: for every record of the training split, the patch count
of its ABC and its MTF file (instrument names kept) and the token count of one text-dropout
text (seeded) and of its ``description`` (the benchmark's query), with the folder's tokenizer.
Prints the median, the 90th percentile and the share longer than the mini preset's segments
(128 patches, 128 tokens) and than twice that. docs/demo.md ("Recipe experiments", evening)
quotes these shares for the ``truncation`` experiment.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from clamp3.config import load_preset
from clamp3.tokenizer import load_tokenizer
from clamp3.train.augment import text_dropout
from clamp3.train.data import file_patches, load_patchify
from clamp3.utils.io import read_jsonl


def describe(name: str, counts: list[int], segment: int) -> None:
    values = np.asarray(counts)
    median, p90 = np.median(values), np.percentile(values, 90)
    longer, twice = np.mean(values > segment), np.mean(values > 2 * segment)
    print(
        f"{name:22s} n {len(values):4d}  median {median:5.0f}  p90 {p90:5.0f}"
        f"  > {segment}: {longer:4.0%}  > {2 * segment}: {twice:4.0%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo", type=Path, help="a finished clamp3 demo work folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    corpus = args.demo / "corpus"
    config = load_preset("mini")
    tokenizer = load_tokenizer(config.tower("text"), args.demo / "tokenizer")  # as training encodes
    patchify = load_patchify()
    rng = np.random.default_rng(args.seed)
    counts: dict[str, list[int]] = {"ABC": [], "MTF": [], "text dropout": [], "description": []}
    for record in read_jsonl(corpus / "m4rag_train.jsonl"):
        for path in record["filepaths"]:
            kind = {".abc": "ABC", ".mtf": "MTF"}.get(Path(path).suffix)
            if kind:
                strip = config.tower("symbolic").strip_default_length
                counts[kind].append(len(file_patches(corpus / path, strip, patchify, None)))
        counts["text dropout"].append(len(tokenizer.encode(text_dropout(record, rng))))
        counts["description"].append(len(tokenizer.encode(record["description"])))
    patches, tokens = config.tower("symbolic").segment_length, config.tower("text").segment_length
    describe("ABC patches", counts["ABC"], patches)
    describe("MTF patches", counts["MTF"], patches)
    describe("text-dropout tokens", counts["text dropout"], tokens)
    describe("description tokens", counts["description"], tokens)


if __name__ == "__main__":
    main()

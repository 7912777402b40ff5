"""What the demo's texts allow at best: reference rankings that know some facts of every piece.

    python benchmarks/demo_oracle.py CORPUS [--split test]

Each row is the expected MRR (and Hit@1) of a ranking that puts first the pieces sharing the
query piece's values of the named facts (from the corpus ``facts``) and is random among them and
after them: the demo benchmark's collection-only reference (``clamp3.demo.benchmark.
collection_reference``) with a finer grouping. A model that read every fact a description states
would reach about the last row; the table under the demo's own shows the first. ``docs/demo.md``
(Recipe experiments, 2026-12-04 night) quotes these figures.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from clamp3.demo.benchmark import collection_reference
from clamp3.utils.io import read_jsonl

LEVELS = (
    ("collection",),
    ("collection", "meter"),
    ("collection", "key_tonic", "key_mode"),
    ("collection", "key_tonic", "key_mode", "meter"),
    ("collection", "key_tonic", "key_mode", "meter", "texture"),
    ("collection", "key_tonic", "key_mode", "meter", "texture", "bars"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path, help="a clamp3 build-corpus folder")
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    facts = {r["id"]: r["facts"] for r in read_jsonl(args.corpus / f"m4rag_{args.split}.jsonl")}
    print(f"{args.split}: {len(facts)} pieces")
    print(f"{'MRR':>6} {'Hit@1':>6}  ranking knows")
    for level in LEVELS:
        groups = {i: "|".join(str(f.get(name)) for name in level) for i, f in facts.items()}
        ref = collection_reference(groups)
        print(f"{ref['mrr']:6.3f} {ref['hit@1']:6.3f}  {' + '.join(level)}")


if __name__ == "__main__":
    main()

"""Which facts does each tower of a demo model keep? Linear probes on its frozen embeddings.

    python benchmarks/demo_probe.py CORPUS_DIR MODEL [--kinds sheet,midi,audio,text_en]
                                    [--facts tonic,mode,key,meter,collection] [--json OUT]

Every piece of the corpus's ``train`` and ``validation`` splits is embedded per kind (its
``eval/<split>/<kind>/`` file: interleaved ABC, MTF, audio features, an English text) with the
model's pipeline. For each kind and fact (from the piece's ``facts.json``: tonic, mode, key =
tonic + mode, meter, collection), a multinomial logistic regression on standardised features
(scikit-learn, L2, C = 1) is fitted on the training pieces and scored on the validation
pieces; beside it the accuracy of always answering the training split's most frequent value.

A fact the texts state but a tower's embedding does not keep cannot be matched through it: a
text tower whose embedding loses the tonic, although every description names the key, has
learned that its partner tower cannot read it. This is a diagnostic of the demo recipe (it
complements ``demo_facts.py``, which asks what the alignment uses), not a speed figure.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

from clamp3 import Clamp3Pipeline

KINDS = {"sheet": ".abc", "midi": ".mtf", "audio": ".npy", "text_en": ".txt"}
FOLDERS = {"audio": "audio_features"}
FACTS = {
    "tonic": lambda f: f["key_tonic"],
    "mode": lambda f: f["key_mode"],
    "key": lambda f: f"{f['key_tonic']} {f['key_mode']}",
    "meter": lambda f: f["meter"],
    "collection": lambda f: f["collection"],
}


def embed_split(pipe: Clamp3Pipeline, corpus: Path, split: str, kind: str) -> tuple[np.ndarray, list[dict]]:
    """(N, D) embeddings of the split's files of ``kind`` and each piece's facts, by piece id."""
    folder = corpus / "eval" / split / FOLDERS.get(kind, kind)
    files = sorted(folder.glob(f"*{KINDS[kind]}"))
    if not files:
        raise SystemExit(f"{folder}: no {KINDS[kind]} files (is {corpus} a demo corpus?)")
    facts = [json.loads((corpus / "pieces" / f.stem / "facts.json").read_text("utf-8")) for f in files]
    return pipe.encode_files(files, batch_size=16), facts


def probe(train: np.ndarray, y_train: list[str], val: np.ndarray, y_val: list[str]) -> dict[str, float]:
    """Validation accuracy of a logistic regression fitted on ``train``, its training accuracy,
    and the validation accuracy of the training split's majority value."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000)).fit(train, y_train)
    majority = Counter(y_train).most_common(1)[0][0]
    return {
        "validation": float(clf.score(val, y_val)),
        "train": float(clf.score(train, y_train)),
        "majority": float(np.mean([y == majority for y in y_val])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("model")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--facts", default=",".join(FACTS))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    kinds, facts = args.kinds.split(","), args.facts.split(",")
    for name in (*kinds, *facts):
        if name not in KINDS and name not in FACTS:
            known = f"kinds: {', '.join(KINDS)}; facts: {', '.join(FACTS)}"
            raise SystemExit(f"unknown kind or fact {name!r}; {known}")
    pipe = Clamp3Pipeline.from_pretrained(args.model)
    results: dict[str, dict[str, dict[str, float]]] = {}
    print(f"validation accuracy (training accuracy; majority baseline) of a linear probe, {args.model}")
    for kind in kinds:
        x_train, f_train = embed_split(pipe, args.corpus, "train", kind)
        x_val, f_val = embed_split(pipe, args.corpus, "validation", kind)
        row = results.setdefault(kind, {})
        for fact in facts:
            get = FACTS[fact]
            row[fact] = probe(x_train, [get(f) for f in f_train], x_val, [get(f) for f in f_val])
        cells = [f"{f} {r['validation']:.2f} ({r['train']:.2f}; {r['majority']:.2f})" for f, r in row.items()]
        print(f"{kind:8s} n={len(f_train)}/{len(f_val)}  " + "  ".join(cells))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()

"""Which facts of a text does a demo model read? Counterfactual texts, scored against the piece.

    python benchmarks/demo_facts.py CORPUS_DIR MODEL [--split validation] [--languages en,de,...]
                                    [--targets sheet,midi,audio] [--json OUT]

For every piece of the split and every language, the piece's own ``description`` is written again
from its ``facts.json`` by the corpus's templates (``clamp3.corpus.texts.write_texts``), once with
the true value of one fact and once with each alternative: the tonic (12 pitch classes, mode
kept), the mode (major / minor; the mood word follows it, as in the corpus), the meter (2/4, 3/4,
4/4, 6/8, 2/2, 3/8) and the number of bars (the true one, half, double). Only that fact's words
change. Each variant is embedded as a text query and scored (cosine) against the piece's own
file of every target kind. A model that reads the fact ranks the true text first; one that
ignores it gives the true text a random rank among the K variants (chance: rank-1 share 1/K, mean
rank (K + 1) / 2).

The true variant must equal the text in ``eval/<split>/text_<lang>/`` (checked), so the variants
differ from the benchmark's queries only in that fact; they are untitled when the corpus's queries
are (``--no-train-titles``, read from its ``manifest.json``). This is a diagnostic for the demo recipe,
not a speed figure; it prints one table and, with ``--json``, writes the per-fact numbers.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np

from clamp3 import Clamp3Pipeline
from clamp3.corpus.texts import LANGUAGES, write_texts
from clamp3.utils.io import read_jsonl

TONICS = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")  # the corpus's spelling
METERS = ("2/4", "3/4", "4/4", "6/8", "2/2", "3/8")
TARGETS = {"sheet": ("sheet", ".abc"), "midi": ("midi", ".mtf"), "audio": ("audio_features", ".npy")}
ENHARMONIC = {"Db": "C#", "D#": "Eb", "Gb": "F#", "G#": "Ab", "A#": "Bb", "Cb": "B", "B#": "C", "Fb": "E"}
MODES = ("major", "minor")
FACTS = ("tonic", "mode", "meter", "bars")


def variants(facts: dict, fact: str) -> tuple[list[dict], int] | None:
    """The fact's variants of ``facts`` and the index of the true one; None when it has no value."""
    def with_value(key: str, value) -> dict:
        return {**facts, key: value}

    if fact == "tonic":
        tonic = ENHARMONIC.get(facts["key_tonic"], facts["key_tonic"])
        if tonic not in TONICS:
            return None
        return [with_value("key_tonic", t) for t in TONICS], TONICS.index(tonic)
    if fact == "mode":
        if facts["key_mode"] not in MODES:
            return None
        return [with_value("key_mode", m) for m in MODES], MODES.index(facts["key_mode"])
    if fact == "meter":
        if facts.get("meter") not in METERS or facts.get("meter_changes"):
            return None
        return [with_value("meter", m) for m in METERS], METERS.index(facts["meter"])
    if fact == "bars":
        bars = facts.get("bars")
        if not bars or bars < 4:
            return None
        return [with_value("bars", b) for b in (bars, bars // 2, bars * 2)], 0
    raise ValueError(fact)


def piece_ids(corpus: Path, split: str) -> list[str]:
    return [record["id"] for record in read_jsonl(corpus / f"m4rag_{split}.jsonl")]


def titled_queries(corpus: Path) -> bool:
    """Whether the corpus's ``eval/`` queries name the title (not with ``train_titles=False``)."""
    manifest = json.loads((corpus / "manifest.json").read_text(encoding="utf-8"))
    return bool(manifest.get("options", {}).get("train_titles", True))


def score_piece(
    pipe: Clamp3Pipeline, corpus: Path, split: str, pid: str, langs, targets, titled: bool
) -> list[dict]:
    """One row per (language, fact, target): the true variant's rank among the variants
    (``titled``: :func:`titled_queries` of the corpus)."""
    facts = json.loads((corpus / "pieces" / pid / "facts.json").read_text(encoding="utf-8"))
    files = {t: corpus / "eval" / split / TARGETS[t][0] / f"{pid}{TARGETS[t][1]}" for t in targets}
    files = {t: f for t, f in files.items() if f.exists()}
    if not files:
        return []
    music = dict(zip(files, pipe.encode_files(list(files.values()))))
    rows = []
    for lang in langs:
        query = corpus / "eval" / split / f"text_{lang}" / f"{pid}.txt"
        for fact in FACTS:
            found = variants(facts, fact)
            if found is None:
                continue
            options, true = found
            texts = [write_texts(v, lang, titled=titled)["description"] for v in options]
            if query.exists() and texts[true] != query.read_text(encoding="utf-8").strip():
                raise SystemExit(f"{pid} {lang}: the regenerated text differs from {query}")
            if len(set(texts)) < len(texts):
                continue  # the template of this text does not state the fact
            q = pipe.encode_texts(texts)
            for target, vector in music.items():
                s = q @ vector
                rows.append({"language": lang, "fact": fact, "target": target, "k": len(texts),
                             "rank": 1 + int((s > s[true]).sum())})
    return rows


def table(rows: list[dict]) -> str:
    head = f"{'fact':6s} {'target':6s} {'K':>2s} {'n':>4s} {'rank-1':>7s} {'chance':>7s}"
    lines = [f"{head} {'mean rank':>10s} {'chance':>7s}"]
    keys = sorted({(r["fact"], r["target"], r["k"]) for r in rows}, key=lambda k: (FACTS.index(k[0]), k[1]))
    for fact, target, k in keys:
        ranks = [r["rank"] for r in rows if (r["fact"], r["target"], r["k"]) == (fact, target, k)]
        top = np.mean([r == 1 for r in ranks])
        lines.append(f"{fact:6s} {target:6s} {k:2d} {len(ranks):4d} {top:7.3f} {1 / k:7.3f} "
                     f"{statistics.mean(ranks):10.2f} {(k + 1) / 2:7.2f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("model")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--languages", default=",".join(LANGUAGES))
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    pipe = Clamp3Pipeline.from_pretrained(args.model)
    langs, targets = args.languages.split(","), args.targets.split(",")
    rows, titled = [], titled_queries(args.corpus)  # read once, not per piece
    for pid in piece_ids(args.corpus, args.split):
        rows += score_piece(pipe, args.corpus, args.split, pid, langs, targets, titled)
    print(f"model {args.model} | corpus {args.corpus} | split {args.split} | languages {','.join(langs)}")
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

"""A small synthetic aligned data set in the training formats (tests, benchmarks, examples).

Item i has a text made of words that only it uses, an ABC tune whose notes are drawn from
i's own seed, and audio features scattered around i's own random prototype vector, so text
and music carry the same identity and a model can learn to pair them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

WORDS = [
    "waltz",
    "piano",
    "fugue",
    "organ",
    "quartet",
    "chorale",
    "song",
    "lullaby",
    "dance",
    "march",
    "hymn",
    "sonata",
    "prelude",
    "minor",
    "major",
    "slow",
    "fast",
    "quiet",
    "bright",
    "dark",
    "solo",
    "string",
    "voice",
    "folk",
    "bach",
    "tranquil",
    "joyful",
]
NOTES = "CDEFGABcdefgab"


def toy_text(i: int) -> tuple[str, str]:
    """(title, analysis) of item i; word triples are distinct for i < len(WORDS) ** 2."""
    a, b = divmod(i, len(WORDS))
    c = (a * 7 + b * 3 + 5) % len(WORDS)
    title = f"{WORDS[a % len(WORDS)]} {WORDS[b]}"
    analysis = f"a {WORDS[b]} {WORDS[c]} in {WORDS[a % len(WORDS)]} style\nit is {WORDS[c]}"
    return title, analysis


def toy_abc(i: int, bars: int, rng: np.random.Generator) -> str:
    """An ABC tune: header lines, then ``bars`` bars of four eighth notes on one line each 4."""
    notes = [NOTES[j] for j in rng.integers(len(NOTES), size=bars * 4)]
    body = []
    for start in range(0, bars, 4):
        line = "".join(
            "".join(notes[(b * 4) : (b * 4) + 4]) + "|" for b in range(start, min(bars, start + 4))
        )
        body.append(line)
    header = [f"X:{i}", "L:1/8", "M:4/4", "K:C", 'V:1 treble nm="Piano" snm="Pno."']
    return "\n".join(header + body) + "\n"


def write_toy_pairs(
    directory: str | Path,
    n: int = 16,
    feature_dim: int = 32,
    seed: int = 0,
    max_bars: int = 24,
    max_windows: int = 12,
) -> Path:
    """Write ``pairs.jsonl`` + ``abc/`` + ``npy/`` under ``directory``; return the JSONL path.

    Every record lists one ``.abc`` and one ``.npy`` file (stages pick their modality's).
    Lengths vary, and some items exceed the tiny preset's segments, so crops are exercised.
    """
    root = Path(directory)
    (root / "abc").mkdir(parents=True, exist_ok=True)
    (root / "npy").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        item_rng = np.random.default_rng([seed, i])
        abc = f"abc/{i:04d}.abc"
        (root / abc).write_text(
            toy_abc(i, int(item_rng.integers(2, max_bars + 1)), item_rng), encoding="utf-8"
        )
        prototype = rng.standard_normal(feature_dim).astype(np.float32)
        windows = int(item_rng.integers(1, max_windows + 1))
        rows = prototype + 0.1 * item_rng.standard_normal((windows, feature_dim)).astype(np.float32)
        npy = f"npy/{i:04d}.npy"
        # Both shapes the official extractor and others write: (1, n, F) and (n, F).
        np.save(root / npy, rows[None] if i % 2 else rows)
        title, analysis = toy_text(i)
        record = {
            "id": f"toy-{i:04d}",
            "filepaths": [abc, npy],
            "language": "en",
            "title": title,
            "genres": [title.split()[0]],
            "analysis": analysis,
            "translations": {"language": "xx", "analysis": analysis.upper()},
        }
        lines.append(json.dumps(record, ensure_ascii=False))
    path = root / "pairs.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path

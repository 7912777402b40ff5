"""Try a variant of the demo's contrastive recipe on a finished demo folder, scored on validation.

    python benchmarks/demo_recipe.py runs/demo NAME '{"stages": [{...}, {...}]}' [--split validation]

Reuses the folder's corpus, tokenizer and M3 encoder (``clamp3 demo`` made them), trains the
``mini`` recipe's two contrastive stages with the JSON overrides merged in (one object per stage,
nested fields merge key by key: ``{"optim": {"max_steps": 600}}``; ``"from": i`` copies stage i,
so a list of three makes a three-stage run; top-level ``"config"`` sets TrainConfig fields such as
``seed`` or ``model``; ``"m3": null`` starts the symbolic tower from random weights), then runs
the demo benchmark on ``--split`` (validation by default: the test split is for reporting, never
for tuning). Everything goes to ``runs/demo-recipes/NAME`` (a rerun resumes), and one summary line
per variant is appended to ``runs/demo-recipes/results.jsonl``. The table of ``docs/demo.md``
("Recipe experiments") came from these runs; its semitone-feature, group-size and
translation-list rows needed code that was not kept.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch

from clamp3.demo.benchmark import run_benchmark
from clamp3.demo.pipeline import DEFAULT_THREADS, DemoOptions, demo_stages, run_config
from clamp3.model import Clamp3Model
from clamp3.train import train


def merge(obj, patch: dict) -> None:
    for key, value in patch.items():
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            merge(current, value)
        else:
            setattr(obj, key, tuple(value) if isinstance(current, tuple) else value)


def variant_stages(overrides: list[dict]) -> list:
    _, align = demo_stages(DemoOptions())
    if not overrides:
        return align
    stages = []
    for i, patch in enumerate(overrides):
        patch = dict(patch)
        stage = copy.deepcopy(align[patch.pop("from", i)])
        merge(stage, patch)
        stages.append(stage)
    return stages


def summary(name: str, entry: dict, seconds: float) -> dict:
    mrr = {row["direction"]: row["mrr"] for row in entry["rows"]}
    text = [row["mrr"] for row in entry["rows"] if row["group"] == "text"]
    reference = (entry["collection_reference"] or {}).get("mrr")
    return {
        "name": name,
        "train_s": round(seconds, 1),
        "pieces": entry["n_pieces"],
        "collection_only": reference,
        "en_sheet": mrr["text (en) -> sheet"],
        "text_mean": statistics.mean(text),
        "text_min": min(text),
        "sheet_audio": mrr["sheet -> audio"],
        "audio_sheet": mrr["audio -> sheet"],
        "midi_audio": mrr["midi -> audio"],
        "audio_midi": mrr["audio -> midi"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo", type=Path, help="a finished clamp3 demo work folder")
    parser.add_argument("name")
    parser.add_argument("overrides", nargs="?", default="{}")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    args = parser.parse_args()
    over = json.loads(args.overrides)
    torch.set_num_threads(args.threads)
    root = args.demo.parent / f"{args.demo.name}-recipes"
    work = root / args.name
    work.mkdir(parents=True, exist_ok=True)
    for part in ("corpus", "tokenizer"):
        if not (work / part).exists():
            (work / part).symlink_to((args.demo / part).resolve())
    start = {"tokenizer": str(work / "tokenizer")}
    m3 = over.get("m3", str((args.demo / "train" / "m3" / "best").resolve()))
    if m3:
        start["init_symbolic_from"] = m3
    options = DemoOptions(threads=args.threads, show_progress=False)
    config = run_config(work, "align", variant_stages(over.get("stages", [])), options, **start)
    for key, value in over.get("config", {}).items():
        setattr(config, key, value)
    began = time.perf_counter()
    best = train(config, resume=True, allow_config_change=True)
    seconds = time.perf_counter() - began
    model = Clamp3Model.from_pretrained(best)
    bench = work / f"bench-{args.split}"
    result = run_benchmark(
        model, work / "corpus", bench, args.name, split=args.split, show_progress=False, plot=False
    )
    line = {**summary(args.name, result.entry, seconds), "overrides": over, "split": args.split}
    with open(root / "results.jsonl", "a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")
    print(result.table)
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in line.items()}))


if __name__ == "__main__":
    main()

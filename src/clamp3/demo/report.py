"""The benchmark's outputs: the printed table and example queries, a side-by-side table of every
model benchmarked in the folder, the JSON (rows keyed by model) and a plot of every model's MRR
and Hit@10 next to the random baseline."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from clamp3.utils.io import write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

JSON_NAME, TABLE_NAME, PLOT_NAME = "benchmark.json", "benchmark.txt", "benchmark.png"
METRIC_COLUMNS = (("mrr", "MRR"), ("hit@1", "Hit@1"), ("hit@10", "Hit@10"))
COMPARED = (("mrr", "MRR"), ("hit@1", "Hit@1"))  # per model in the side-by-side table
CELL = 7  # characters per metric cell of the side-by-side table: 6 for the value, 1 for a mark


def format_table(entry: dict[str, Any]) -> str:
    """One model's rows as a fixed-width table: each metric followed by its random baseline."""
    head = f"{'direction':<24}{'N':>5}" + "".join(f"{name:>8}{'random':>8}" for _, name in METRIC_COLUMNS)
    lines = [
        f"model {entry['model']} | corpus {entry['corpus']} | split {entry['split']} "
        f"({entry['n_pieces']} pieces) | audio from {entry['audio_input']} | ties: expected rank",
        head,
        "-" * len(head),
    ]
    group = None
    for row in entry["rows"]:
        if group is not None and row["group"] != group:
            lines.append("emergent (no training pair joins these two kinds):")
        group = row["group"]
        cells = "".join(f"{row[key]:>8.3f}{row['random'][key]:>8.3f}" for key, _ in METRIC_COLUMNS)
        lines.append(f"{row['direction']:<24}{row['n_candidates']:>5}{cells}")
    reference = entry.get("collection_reference")
    if reference:
        values = ", ".join(f"{name} {reference[key]:.3f}" for key, name in METRIC_COLUMNS)
        lines.append(f"reference: knowing only each piece's collection (random within it): {values}")
    return "\n".join(lines)


def format_comparison(models: dict[str, dict[str, Any]], latest: str) -> str:
    """Every model measured on the same corpus and split as ``models[latest]``, side by side:
    one row per direction (the latest entry's order), MRR and Hit@1 per model, then the random
    baseline. Models measured elsewhere are named under the table, not mixed in. A cell marked
    ``*`` had another number of candidates than the latest run (files that failed to embed);
    ``-``: the model has no such row. Empty when fewer than two models can be compared."""
    base = models[latest]
    where = (base["corpus"], base["split"])
    same = sorted(label for label, e in models.items() if (e.get("corpus"), e.get("split")) == where)
    if len(same) < 2:
        return ""
    width = CELL * len(COMPARED)

    def line(first: str, groups: list[str]) -> str:
        return (first + "".join(f"  {group:>{width}}" for group in groups)).rstrip()

    names = "".join(f"{name:>{CELL - 1}} " for _, name in COMPARED)
    lines = [
        f"every model on corpus {base['corpus']} | split {base['split']} ({base['n_pieces']} pieces) "
        "| ties: expected rank",
        line(" " * 29, [_clip_left(label, width) for label in same] + ["random"]),
        line(f"{'direction':<24}{'N':>5}", [names] * (len(same) + 1)),
    ]
    lines.append("-" * len(lines[-1]))
    by_model = {label: {row["direction"]: row for row in models[label]["rows"]} for label in same}
    group = None
    for row in base["rows"]:
        if group is not None and row["group"] != group:
            lines.append("emergent (no training pair joins these two kinds):")
        group = row["group"]
        groups = [_model_cells(by_model[label].get(row["direction"]), row) for label in same]
        groups.append("".join(f"{row['random'][key]:>{CELL - 1}.3f} " for key, _ in COMPARED))
        lines.append(line(f"{row['direction']:<24}{row['n_candidates']:>5}", groups))
    clipped = [label for label in same if len(label) > width]
    if clipped:
        lines.append("models: " + ", ".join(clipped))
    others = [f"{label} ({e.get('split')} of {e.get('corpus')})" for label, e in sorted(models.items())]
    others = [text for text, label in zip(others, sorted(models)) if label not in same]
    if others:
        lines.append("not compared (other corpus or split): " + "; ".join(others))
    return "\n".join(lines)


def _model_cells(row: dict[str, Any] | None, base: dict[str, Any]) -> str:
    """One model's MRR and Hit@1 cells in one direction (see :func:`format_comparison`)."""
    if row is None:
        return "".join(f"{'-':>{CELL - 1}} " for _ in COMPARED)
    mark = "*" if row["n_candidates"] != base["n_candidates"] else " "
    return "".join(f"{row[key]:>{CELL - 1}.3f}{mark}" for key, _ in COMPARED)


def _clip_left(label: str, width: int) -> str:
    """A model label cut to ``width`` characters from the left: a path's end names the run."""
    return label if len(label) <= width else "..." + label[-(width - 3) :]


def clip(text: str, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters (by character, not by word: Chinese
    has no spaces to cut at)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 4].rstrip() + " ..."


def format_examples(entry: dict[str, Any], width: int = 100) -> str:
    """The example queries with their top results; the correct piece is marked."""
    lines = []
    for ex in entry["examples"]:
        rank = ex["rank_of_correct"]
        where = f"correct piece ranked {rank:g} of {entry['n_pieces']}" if rank is not None else ""
        lines.append(f"[{ex['language']} -> {ex['target']}] query from {ex['id']} ({ex['title']}); {where}")
        lines.append("    " + clip(ex["query"], width))
        for hit in ex["results"]:
            mark = "  <- correct" if hit["correct"] else ""
            lines.append(f"    {hit['rank']}. {hit['score']:.3f}  {hit['id']}  ({hit['title']}){mark}")
    return "\n".join(lines)


def format_report(result: Any) -> str:
    """What the commands print: the table, the example queries and where the files are
    (``result`` is a :class:`clamp3.demo.benchmark.BenchmarkResult`)."""
    pictures = (result.plot_path, getattr(result, "map_path", None))
    files = [str(result.json_path)] + [str(path) for path in pictures if path]
    parts = [result.table] + ([result.comparison] if getattr(result, "comparison", "") else [])
    parts += ["example queries (top results; cosine, id, title):", format_examples(result.entry)]
    if result.failures:
        parts.append(f"{len(result.failures)} files could not be embedded (left out): see {result.json_path}")
    parts.append("written: " + ", ".join(files))
    return "\n\n".join(parts)


def write_outputs(out: Path, entry: dict[str, Any], plot: bool = True) -> tuple[Path, Path | None, str, str]:
    """Merge ``entry`` into ``OUT/benchmark.json``, write ``benchmark.txt`` (this model's
    table, every model of the folder side by side when there are several, the examples) and,
    with ``plot``, ``benchmark.png`` over every model in the JSON. Returns (JSON path, PNG
    path or None when matplotlib is missing or ``plot`` is off, the table text, the
    side-by-side text or "")."""
    out.mkdir(parents=True, exist_ok=True)
    data = merge_entry(out / JSON_NAME, entry)
    table = format_table(entry)
    comparison = format_comparison(data["models"], entry["model"])
    parts = [table] + ([comparison] if comparison else []) + [format_examples(entry)]
    write_text_atomic(out / TABLE_NAME, "\n\n".join(parts) + "\n")
    plot_path = None
    if plot:
        try:
            plot_path = plot_benchmark(data["models"], out / PLOT_NAME)
        except ImportError as exc:  # the plot is optional; the table and JSON are the result
            log.warning("%s; no plot written", exc)
    return out / JSON_NAME, plot_path, table, comparison


def plot_benchmark(models: dict[str, dict[str, Any]], path: Path) -> Path:
    """Horizontal bars per direction, one colour per model, a black tick at the random
    baseline and a dashed line in the model's colour at its collection-only reference (when
    the corpus names collections); left panel MRR, right panel Hit@10. Format from ``path``'s
    suffix."""
    from clamp3.utils.plotting import pyplot, save_figure

    plt = pyplot()
    labels = sorted(models)
    directions = [row["direction"] for row in models[labels[0]]["rows"]]
    height = 0.8 / len(labels)
    fig, axes = plt.subplots(1, 2, figsize=(12, 1.2 + 0.32 * len(directions)), sharey=True)
    for ax, (key, name) in zip(axes, (("mrr", "MRR"), ("hit@10", "Hit@10"))):
        for m, label in enumerate(labels):
            rows = {row["direction"]: row for row in models[label]["rows"]}
            ys = [i - 0.4 + height * (m + 0.5) for i in range(len(directions))]
            values = [rows[d][key] if d in rows else 0.0 for d in directions]
            bars = ax.barh(ys, values, height=height * 0.9, label=label)
            chance = [rows[d]["random"][key] if d in rows else 0.0 for d in directions]
            ax.scatter(chance, ys, marker="|", color="black", s=60, zorder=3)
            reference = models[label].get("collection_reference") or {}
            if key in reference:
                ax.axvline(reference[key], color=bars.patches[0].get_facecolor(), linestyle="--", zorder=3)
        ax.set_xlim(0, 1)
        ax.set_title(f"{name} (black tick: random; dashed: collection-only)")
        ax.grid(True, axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(directions)), directions)
    axes[0].invert_yaxis()
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(len(labels), 4), fontsize="small")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return save_figure(fig, path, dpi=110)


def read_benchmark(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON of :func:`run_benchmark` (an empty one when the file does not exist)."""
    path = Path(path)
    if not path.is_file():
        return {"format": "clamp3-benchmark/1", "models": {}}
    return json.loads(path.read_text(encoding="utf-8"))


def merge_entry(path: Path, entry: dict[str, Any]) -> dict[str, Any]:
    """Write ``entry`` into the JSON at ``path`` under its model label (atomically)."""
    data = read_benchmark(path)
    data.setdefault("models", {})[entry["model"]] = entry
    write_json_atomic(path, data)
    return data

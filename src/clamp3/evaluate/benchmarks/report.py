"""The printed table of a benchmark run (ours beside the paper) and its plot."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def _paper(row: dict[str, Any]) -> tuple[str, str]:
    figure = row.get("published")
    if not figure:
        return "-", "-"
    return f"{figure['mrr']:.4f}", f"{row['mrr'] - figure['mrr']:+.4f}"


def format_table(result: dict[str, Any]) -> str:
    """Plain-text table: one line per direction with MRR, Hit@1/10/100 and the paper's MRR."""
    paper = result.get("published_as") or "none"
    head = (
        "direction",
        "text",
        "lang",
        "queries",
        "cands",
        "MRR",
        "Hit@1",
        "Hit@10",
        "Hit@100",
        f"paper ({paper})",
        "diff",
    )
    lines = []
    for row in result["rows"]:
        lines.append(
            (
                row["direction"],
                row["text_type"] or "-",
                row["language"] or "-",
                str(row["n_queries"]),
                str(row["n_candidates"]),
                f"{row['mrr']:.4f}",
                f"{row['hit@1']:.4f}",
                f"{row['hit@10']:.4f}",
                f"{row['hit@100']:.4f}",
                *_paper(row),
            )
        )
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" if i < 3 else f"{{:>{w}}}" for i, w in enumerate(widths))
    title = f"{result['dataset']} ({result['subset']}), model {result['model']}, ties {result['ties']}"
    out = [title, fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*line) for line in lines]
    for note in result.get("notes", []):
        out.append(f"note: {note}")
    if result.get("errors"):
        first = result["errors"][0]
        out.append(
            f"note: {len(result['errors'])} inputs failed (errors.jsonl), e.g. {first['path']}: {first['reason']}"
        )
    return "\n".join(out)


def plot_rows(rows: list[dict[str, Any]], path: str | os.PathLike, title: str) -> Path:
    """Bar chart of MRR per direction, ours and (where published) the paper's; PNG/PDF/SVG by
    suffix. Raises ``ImportError`` when matplotlib is missing."""
    from clamp3.utils.plotting import pyplot, save_figure

    plt = pyplot()
    labels = [" ".join(x for x in (r["direction"], r["text_type"], r["language"]) if x) for r in rows]
    ours = [r["mrr"] for r in rows]
    paper = [r["published"]["mrr"] if r.get("published") else 0.0 for r in rows]
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(rows) + 2), 4))
    x = range(len(rows))
    ax.bar([i - 0.2 for i in x], ours, width=0.4, label="ours", color="tab:blue")
    ax.bar([i + 0.2 for i in x], paper, width=0.4, label="paper", color="tab:gray")
    ax.set_xticks(list(x))
    ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("MRR")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)

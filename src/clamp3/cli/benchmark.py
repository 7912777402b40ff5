"""``clamp3 benchmark DATASET PATH``: the paper's retrieval evaluations, and the offline demo's.

``DATASET`` is one of ``wikimt-x``, ``song-describer``, ``midicaps``, ``wikimt``, ``musiccaps``,
``manifest`` (``clamp3.evaluate.benchmarks``) or ``demo`` (a corpus of ``clamp3 build-corpus``,
``clamp3.demo``). The earlier form ``clamp3 benchmark CORPUS`` still runs the demo benchmark.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from clamp3.cli.args import (
    add_model_arguments,
    add_quiet_flag,
    failures_status,
    pipeline_of,
    positive_int,
    print_first_failures,
    require_existing,
)
from clamp3.utils.errors import UsageError

DEMO = "demo"


def _names(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def register(sub: argparse._SubParsersAction) -> None:
    from clamp3.evaluate.benchmarks import DATASETS

    p = sub.add_parser(
        "benchmark",
        help="retrieval benchmarks: the paper's data sets (wikimt-x, song-describer, midicaps, wikimt, "
        "musiccaps, manifest) or the offline demo corpus (demo)",
        description=(
            "clamp3 benchmark DATASET PATH --model M: embeds a downloaded data set (layouts in docs/benchmarks.md), "
            "scores text -> music (and music -> music) retrieval (MRR, Hit@1/10/100), prints our numbers beside "
            "the paper's and writes OUT/results.json, rows.json, ranks.jsonl, errors.jsonl, retrieval.png; vectors "
            "are cached in OUT/cache so a rerun resumes. DATASET: " + ", ".join(DATASETS) + ". "
            "clamp3 benchmark demo CORPUS (or the earlier clamp3 benchmark CORPUS): the offline demo's table on a "
            "corpus made by `clamp3 build-corpus` (docs/demo.md)."
        ),
    )
    p.add_argument(
        "dataset", metavar="DATASET", help=f"{', '.join(DATASETS)}, {DEMO}, or a demo corpus folder"
    )
    p.add_argument("path", nargs="?", metavar="PATH", help="the data set's folder (or its data file)")
    _add_options(p)
    p.set_defaults(handler=_benchmark)


def _add_options(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument(
        "--out",
        default=None,
        help="output folder (default runs/benchmark/DATASET/<model>; demo: 'benchmark' next to the corpus)",
    )
    p.add_argument(
        "--text-types", type=_names, default=None, help="comma-separated text types (default: all)"
    )
    p.add_argument(
        "--languages",
        default="en",
        help="comma-separated languages, or 'all' (default en; wikimt-x translations)",
    )
    p.add_argument(
        "--ties",
        choices=("expected", "optimistic"),
        default="expected",
        help="expected rank under random tie-breaking (default) or the official optimistic one",
    )
    p.add_argument(
        "--json",
        dest="json_out",
        default=None,
        metavar="FILE",
        help='also write {"rows": [...]} (the rows.json schema) to FILE',
    )
    p.add_argument(
        "--subset",
        default=None,
        help="data-set subset (song-describer valid|all, midicaps test|all, musiccaps all|eval|balanced)",
    )
    p.add_argument(
        "--published-as",
        default=None,
        metavar="MODEL",
        help="paper model whose figures are shown (saas, c2, clamp2; default: from --model; 'none')",
    )
    p.add_argument(
        "--split", default="test", choices=["train", "validation", "test"], help="demo corpus split"
    )
    p.add_argument("--batch-size", type=positive_int, default=32, help="segments per forward pass")
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's)")
    p.add_argument(
        "--no-plot", action="store_true", help="write no plots (benchmark.png; the demo's embedding map)"
    )
    add_quiet_flag(p, "no progress bars or log lines")


def _benchmark(args: argparse.Namespace) -> int:
    from clamp3.cli.demo import demo_benchmark
    from clamp3.evaluate.benchmarks import DATASETS

    if args.dataset == DEMO or (args.dataset not in DATASETS and args.path is None):
        args.corpus = args.path if args.dataset == DEMO else args.dataset  # the earlier form: CORPUS only
        if args.corpus is None:
            raise UsageError("clamp3 benchmark demo CORPUS: give the corpus folder")
        return demo_benchmark(args)
    if args.dataset not in DATASETS:
        raise UsageError(f"unknown data set {args.dataset!r}; choose from {', '.join(DATASETS)}, {DEMO}")
    if args.path is None:
        raise UsageError(f"clamp3 benchmark {args.dataset} PATH: give the data set's folder")
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    import torch

    from clamp3.cli.corpus import quiet_logging
    from clamp3.evaluate.benchmarks import loader, published
    from clamp3.evaluate.benchmarks.report import format_table
    from clamp3.evaluate.benchmarks.runner import run_benchmark
    from clamp3.evaluate.items import check_output_file

    quiet_logging(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    subsets = loader(args.dataset).SUBSETS
    if args.subset is not None and args.subset not in subsets:
        raise UsageError(f"{args.dataset} has no subset {args.subset!r}; choose from {', '.join(subsets)}")
    paper = args.published_as or published.guess_model(args.model)
    if paper == "none":
        paper = None
    if paper is not None and paper not in published.figures()["models"]:
        raise UsageError(
            f"--published-as {paper}: choose from {', '.join(published.figures()['models'])}, none"
        )
    require_existing(args.path)  # before the model loads
    if args.json_out:
        check_output_file(args.json_out)
    label = Path(str(args.model)).name or str(args.model)
    out = args.out or str(Path("runs") / "benchmark" / args.dataset / label)
    languages = None if args.languages.strip() == "all" else _names(args.languages)
    model = pipeline_of(args)
    run = run_benchmark(
        args.dataset,
        args.path,
        model,
        out,
        model_label=str(args.model),
        subset=args.subset,
        text_types=args.text_types,
        languages=languages,
        ties=args.ties,
        published_as=paper,
        json_out=args.json_out,
        batch_size=args.batch_size,
        plot=not args.no_plot,
        show_progress=not args.quiet,
    )
    print(format_table(run.result))
    return _failures(run.result["errors"], run.out / "errors.jsonl")


def _failures(errors: list[dict], log: Path) -> int:
    """Name the inputs that could not be embedded (the first ten; all are in ``log``): the run
    scored the rest, and ends with status 1 as every batch command does."""
    print_first_failures([f"error: {err['path']}: {err['reason']}" for err in errors], log)
    return failures_status(len(errors), "inputs could not be embedded and are left out of the scores")

"""``clamp3 demo`` (build, train, benchmark: the whole system offline); the demo corpus's
``clamp3 benchmark demo CORPUS`` runs :func:`demo_benchmark` (registered in ``clamp3.cli.benchmark``)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from clamp3.cli.args import add_quiet_flag, pipeline_of, positive_float, positive_int, settings_from
from clamp3.cli.corpus import quiet_logging
from clamp3.cli.serve import check_port_free, tcp_port
from clamp3.demo.pipeline import DEFAULT_THREADS, DemoOptions

# Bad settings and inputs (a --workdir or --out that is a file or cannot be written) end in
# cli.main: one line and exit status 2 (docs/demo.md), not a traceback.


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="offline end-to-end demo: build a corpus from music21, train the mini model, print the retrieval table",
        description=(
            "Builds (or reuses) an aligned sheet/MIDI/audio/text corpus from music21's corpus, trains its "
            "text tokenizer and the mini model through the real stages (M3 pre-training -> text-audio "
            "-> text-symbolic), embeds and indexes the test split and prints text->music (per language) and "
            "emergent music->music retrieval (MRR, Hit@1, Hit@10) next to the random baseline, then example "
            "queries. Writes WORKDIR/benchmark/benchmark.{json,txt,png}. A rerun reuses every finished step. "
            "The texts are template-generated from metadata and score analysis, not human-written."
        ),
    )
    p.add_argument("--workdir", default="runs/demo", help="work folder (default runs/demo)")
    _add_corpus_arguments(p)
    _add_training_arguments(p)
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    p.add_argument("--no-plot", action="store_true", help="do not write benchmark.png and the embedding map")
    add_quiet_flag(p, "no progress bars or log lines: the table only")
    p.add_argument(
        "--serve",
        action="store_true",
        help="then serve the test pieces with the trained model on the search page (Ctrl-C stops it)",
    )
    p.add_argument("--port", type=tcp_port, default=8000, help="port of the search page (default 8000)")
    p.set_defaults(handler=_demo)


def _add_corpus_arguments(p: argparse.ArgumentParser) -> None:
    """The corpus options: its size, audio length, transposed copies and texts."""
    p.add_argument(
        "--pieces",
        type=positive_int,
        default=DemoOptions.pieces,
        help=f"corpus size (default {DemoOptions.pieces}; ~10%% are test pieces)",
    )
    p.add_argument(
        "--seconds-max",
        type=positive_float,
        default=DemoOptions.seconds_max,
        help=f"audio seconds per piece (default {DemoOptions.seconds_max:g})",
    )
    p.add_argument(
        "--transpose",
        type=int,
        choices=range(12),
        default=DemoOptions.transpose,
        metavar="K",
        help=f"transposed copies of each training piece for the text-symbolic stage, 0-11 "
        f"(default {DemoOptions.transpose})",
    )
    p.add_argument(
        "--train-titles",
        action=argparse.BooleanOptionalAction,
        default=DemoOptions.train_titles,
        help="training texts and benchmark queries name the pieces' titles (default: no, they "
        "say 'the piece'; untitled measured better, docs/demo.md)",
    )


def _add_training_arguments(p: argparse.ArgumentParser) -> None:
    """The training and runtime options: steps, batch, threads, workers, or a model to score."""
    p.add_argument(
        "--steps",
        type=_steps,
        default=None,
        metavar="M3,AUDIO,SYMBOLIC",
        help="optimizer steps per stage, in training order (default: the mini-m3 and mini recipes, "
        "50,1000,1000)",
    )
    p.add_argument("--batch-size", type=positive_int, default=None, help="contrastive batch (default 32)")
    p.add_argument(
        "--threads",
        type=positive_int,
        default=DEFAULT_THREADS,
        help=f"torch threads (default {DEFAULT_THREADS}, fixed)",
    )
    p.add_argument(
        "--workers", type=positive_int, default=None, help="corpus build processes (default: CPU count)"
    )
    p.add_argument(
        "--model",
        "-m",
        default=None,
        help="skip training and benchmark this model (directory, official .pth or tag such as saas)",
    )


def _steps(text: str) -> tuple[int, ...]:
    """``50,500,150`` -> (50, 500, 150); how many the recipes need is checked by the demo."""
    try:
        steps = tuple(int(part) for part in text.split(","))
    except ValueError:
        steps = ()
    if not steps or min(steps) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated step counts >= 1, got {text!r}")
    return steps


def _demo(args: argparse.Namespace) -> int:
    from clamp3.demo.pipeline import run_demo
    from clamp3.demo.report import format_report
    from clamp3.train.interrupt import TrainingInterrupted

    quiet_logging(args)
    if args.serve:  # checked again just before serving; this saves a training run ending in a busy port
        check_port_free("127.0.0.1", args.port)
    options = settings_from(DemoOptions, args, show_progress=not args.quiet, plot=not args.no_plot)
    try:
        result = run_demo(options)
    except TrainingInterrupted as exc:  # the checkpoint is written; a rerun resumes from it
        print(f"{exc.stopped}; run the same command again to continue", file=sys.stderr)
        return exc.exit_code
    print(format_report(result.benchmark))
    if not args.quiet:
        timings = ", ".join(f"{step} {seconds:.0f} s" for step, seconds in result.seconds.items())
        print(f"\n{timings}", file=sys.stderr)
    if args.serve:
        return _serve_demo(args, result.model)
    print(f"\nsearch the test pieces on a web page: {serve_command_line(args)}")
    return 0


# The options that decide a demo folder's content, with their flags: a --serve rerun must repeat
# them, or check_workdir refuses the folder as another demo's.
_FOLDER_FLAGS = {
    "pieces": "--pieces",
    "seconds_max": "--seconds-max",
    "transpose": "--transpose",
    "steps": "--steps",
    "batch_size": "--batch-size",
    "model": "--model",
}


def serve_command_line(args: argparse.Namespace) -> str:
    """:func:`serve_command` as a shell line to copy (a folder name with a space is quoted)."""
    return shlex.join(serve_command(args))


def serve_command(args: argparse.Namespace) -> list[str]:
    """``clamp3 demo --serve`` with this run's folder and every folder setting that is not the
    default, so the printed command serves the model just trained instead of being refused."""
    argv = ["clamp3", "demo", "--serve"]
    if args.workdir != "runs/demo":
        argv += ["--workdir", str(args.workdir)]
    for field, flag in _FOLDER_FLAGS.items():
        value = getattr(args, field)
        if value != getattr(DemoOptions, field):
            argv += [flag, ",".join(map(str, value)) if isinstance(value, tuple) else str(value)]
    if args.train_titles != DemoOptions.train_titles:
        argv.append("--train-titles" if args.train_titles else "--no-train-titles")
    return argv


def _serve_demo(args: argparse.Namespace, model: str) -> int:
    """Embed, index and serve the demo's test pieces through the same commands users run."""
    from clamp3.cli.main import main
    from clamp3.demo.search import prepare_media, search_command

    check_port_free("127.0.0.1", args.port)
    prepare_media(Path(args.workdir))  # bad media ends in cli.main: one line, exit status 2
    *build, serve = search_command(Path(args.workdir), model, args.port)
    for argv in build:
        status = main(argv + (["--quiet"] if args.quiet else []))
        if status != 0:
            return status
    print(f"search page: http://127.0.0.1:{args.port}/  (Ctrl-C stops it)", flush=True)
    return main(serve + (["--quiet"] if args.quiet else []))


def demo_benchmark(args: argparse.Namespace) -> int:
    """``clamp3 benchmark demo CORPUS`` (registered by ``clamp3.cli.benchmark``): the offline
    demo's retrieval table of ``args.model`` on a built corpus."""
    import torch

    from clamp3.demo.benchmark import run_benchmark, split_folder
    from clamp3.demo.report import format_report

    quiet_logging(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = args.out or str(Path(args.corpus).resolve().parent / "benchmark")
    split_folder(Path(args.corpus), args.split)  # before the model: loading it may take a while
    model = pipeline_of(args)
    result = run_benchmark(
        model,
        args.corpus,
        out,
        str(args.model),
        split=args.split,
        batch_size=args.batch_size,
        show_progress=not args.quiet,
        plot=not args.no_plot,
    )
    print(format_report(result))
    return 0

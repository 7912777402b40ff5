"""``clamp3 build-corpus``: the offline score/MIDI/audio/text corpus from music21's corpus."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from clamp3.cli.args import add_quiet_flag, add_timeout_argument, positive_float, positive_int, timeout_of


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build-corpus",
        help="build an aligned sheet/MIDI/audio/multilingual-text corpus from music21's corpus",
        description=(
            "Choose pieces from music21's bundled corpus and write, per piece, MusicXML, interleaved "
            "ABC, MIDI, MTF, audio of the MIDI (FluidSynth with a General-MIDI soundfont, or a built-in "
            "additive synthesizer) and template-generated texts in English, German, French, Spanish and "
            "Chinese; then M4-RAG-style JSONL per split (m4rag_<split>.jsonl), splits.json, evaluation "
            "folders (eval/<split>/{sheet,midi,audio,text_<lang>}) and manifest.json. Reruns resume; "
            "failed pieces are listed in OUT/errors.jsonl and replaced by the next candidates."
        ),
    )
    p.add_argument("output", metavar="OUT", help="corpus directory (created or resumed)")
    p.add_argument(
        "--pieces", type=positive_int, default=None, help="number of pieces (default: every candidate)"
    )
    p.add_argument("--workers", type=positive_int, default=None, help="worker processes (default: CPU count)")
    p.add_argument(
        "--seconds-max", type=positive_float, default=30.0, help="audio length cap in seconds (default 30)"
    )
    p.add_argument("--no-audio", action="store_true", help="skip audio rendering")
    p.add_argument(
        "--transpose",
        type=int,
        default=0,
        metavar="K",
        help="also write K transposed copies (ABC, MTF, texts; no audio) of each training piece, 0-11",
    )
    p.add_argument(
        "--no-train-titles",
        action="store_true",
        help="training texts and the eval/ queries without the pieces' titles (nothing the "
        "music shows); the validation and test records keep them",
    )
    p.add_argument(
        "--synth",
        choices=["auto", "fluidsynth", "additive"],
        default="auto",
        help="audio synthesizer (auto: FluidSynth when it and a GM soundfont are installed)",
    )
    p.add_argument(
        "--features",
        metavar="PRESET",
        default=None,
        help="also write audio features with this preset's front-end",
    )
    p.add_argument(
        "--exclude",
        metavar="CORPUS",
        action="append",
        default=[],
        help="leave out every piece this corpus holds (repeatable): held-out pieces for an external check",
    )
    p.add_argument(
        "--retry-failed", action="store_true", help="try pieces that failed in an earlier run again"
    )
    add_timeout_argument(p, 300.0, "building one piece")
    add_quiet_flag(p, "no progress bar, warnings and errors only")
    p.set_defaults(handler=_build_corpus)


def quiet_logging(args: argparse.Namespace) -> None:
    """With ``--quiet`` (and without ``-v``) only warnings and errors are logged: cli.main
    keeps clamp3's own INFO lines (step notes), which a quiet run does not want either."""
    if getattr(args, "quiet", False) and not getattr(args, "verbose", False):
        for name in ("", "clamp3"):  # the root logger, and clamp3's, which cli.main sets apart
            logging.getLogger(name).setLevel(logging.WARNING)


def _build_corpus(args: argparse.Namespace) -> int:
    from clamp3.corpus import BuildOptions, build_corpus, corpus_piece_ids
    from clamp3.utils.errors import InputError

    quiet_logging(args)
    for path in args.exclude:
        if Path(path).resolve() == Path(args.output).resolve():
            raise InputError(path, "--exclude names the corpus being built; name another corpus")
    excluded = set().union(*(corpus_piece_ids(path) for path in args.exclude))
    # A ConfigError (an InputError) from the options or the build ends in cli.main: one line, exit 2.
    options = BuildOptions(
        seconds_max=args.seconds_max,
        audio=not args.no_audio,
        synth=args.synth,
        features=args.features,
        transpose=args.transpose,
        train_titles=not args.no_train_titles,
    )
    summary = build_corpus(
        args.output,
        pieces=args.pieces,
        workers=args.workers,
        options=options,
        retry_failed=args.retry_failed,
        show_progress=not args.quiet,
        timeout=timeout_of(args),
        exclude=excluded,
    )
    print(
        f"{len(summary.built)} pieces in {args.output} ({summary.reused} reused, {len(summary.failed)} failed "
        f"in this run) in {summary.seconds:.1f} s ({summary.cpu_seconds:.1f} s CPU); splits: "
        f"{json.dumps(summary.splits)}",
        file=sys.stderr,
    )
    for error in summary.failed[:10]:
        print(f"  {error['message']}", file=sys.stderr)
    if summary.failed:
        print(f"all failures: {args.output}/errors.jsonl", file=sys.stderr)
    return 0 if summary.built else 1

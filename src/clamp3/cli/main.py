"""Entry point of the ``clamp3`` command: collects the sub-commands of every CLI module."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from clamp3.utils.reasons import printable

# One module per stage of the data flow; each defines ``register(subparsers)``.
COMMAND_MODULES = [
    "clamp3.cli.model",  # convert-checkpoint, presets
    "clamp3.cli.onnx",  # export-onnx
    "clamp3.cli.convert",  # convert (MusicXML/MIDI tree -> ABC/MTF), reverse conversions
    "clamp3.cli.audio",  # extract-audio (MERT features)
    "clamp3.cli.embed",  # embed
    "clamp3.cli.index",  # index, search, score, eval
    "clamp3.cli.train",  # train, pretrain-m3
    "clamp3.cli.corpus",  # build-corpus
    "clamp3.cli.demo",  # demo
    "clamp3.cli.benchmark",  # benchmark (the paper's data sets, the demo corpus)
    "clamp3.cli.serve",  # serve
    "clamp3.cli.curate",  # curate
    "clamp3.cli.classify",  # probe, zero-shot, gen-score
]


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean bad input or setup, not a bug: one line and exit status 2 (traceback
    with -v). Missing optional dependencies (ImportError) say which extra to install."""
    from clamp3.tokenizer import TokenizerNotFound
    from clamp3.utils.errors import CheckpointError, InputError

    return (InputError, CheckpointError, TokenizerNotFound, FileExistsError, NotADirectoryError, ImportError)


USER_ERRORS = _user_errors()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clamp3",
        description="CLaMP 3: embed, index, search, evaluate and train on sheet music, MIDI, audio and text.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the sub-command ``argv`` names; returns the exit status (0 done, 1 some inputs
    failed, 2 usage or input error, 130 interrupted)."""
    try:
        return _run(argv)
    except KeyboardInterrupt:
        # Ctrl-C is a request, not a crash: one line instead of a traceback. 130 = 128 + SIGINT,
        # what shells report for a command stopped by Ctrl-C. Sub-commands that can say what they
        # finished (convert) print it before re-raising.
        print("interrupted", file=sys.stderr)
        return 130


def _run(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Third-party loggers (FAISS's loader prints 8 INFO lines on import) stay at WARNING;
    # clamp3's own INFO notes (e.g. index calibration) are kept; -v shows everything.
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("clamp3").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except USER_ERRORS as exc:
        if args.verbose:
            raise
        print(printable(f"error: {exc}"), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

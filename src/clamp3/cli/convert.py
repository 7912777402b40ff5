"""``clamp3 convert``: MusicXML/MIDI trees -> interleaved ABC/MTF trees, and back."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from clamp3.cli.args import add_quiet_flag, add_timeout_argument, non_negative_int, timeout_of
from clamp3.utils.reasons import printable

if TYPE_CHECKING:
    from clamp3.preprocess import ConvertSummary


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert a tree: MusicXML -> interleaved .abc, MIDI -> .mtf (or back with --to)",
        description=(
            "Mirror IN_DIR into OUT_DIR, converting every file as the official CLaMP 3 pipeline does: "
            "MusicXML (.xml .musicxml .mxl) -> interleaved ABC (.abc), MIDI (.mid .midi) -> MTF (.mtf). "
            "With --to midi: .mtf -> .mid; with --to musicxml: .abc -> .xml. On rerun, outputs that exist "
            "and are not older than their input are kept (an edited input is converted again); failures "
            "are listed in OUT_DIR/errors.jsonl. Exit status 1 if any file failed, 130 if interrupted."
        ),
    )
    p.add_argument("input", metavar="IN_DIR", help="directory to convert (searched recursively)")
    p.add_argument("output", metavar="OUT_DIR", help="directory for the mirrored outputs")
    p.add_argument("--to", choices=["symbolic", "midi", "musicxml"], default="symbolic", help="direction")
    p.add_argument(
        "--workers",
        type=non_negative_int,
        default=None,
        help="worker processes (default: CPU count; 0 or 1 = convert in this process)",
    )
    p.add_argument(
        "--standard-abc",
        metavar="DIR",
        default=None,
        help="also write the standard (non-interleaved) ABC here",
    )
    p.add_argument("--overwrite", action="store_true", help="convert again even if the output exists")
    add_timeout_argument(p, 300.0, "converting one file")
    add_quiet_flag(p)
    p.set_defaults(handler=_convert)


def _convert(args: argparse.Namespace) -> int:
    from clamp3.preprocess import convert_tree
    from clamp3.preprocess.bulk import ConvertInterrupted

    try:
        summary = convert_tree(
            args.input,
            args.output,
            to=args.to,
            workers=args.workers,
            standard_abc_dir=args.standard_abc,
            overwrite=args.overwrite,
            timeout=timeout_of(args),
            show_progress=not args.quiet,
        )
    except ConvertInterrupted as exc:
        _report(exc.summary, args.output, interrupted=True)
        raise  # the CLI entry point prints "interrupted" and exits 130
    _report(summary, args.output)
    return 1 if summary.failed else 0


def _report(summary: ConvertSummary, out_dir: str, interrupted: bool = False) -> None:
    """The end-of-run lines on stderr: counts, the first ten failures, where the logs are."""
    done = summary.converted + summary.skipped + len(summary.failed)
    line = (
        f"{summary.total} files: {summary.converted} converted, {summary.skipped} already done, "
        f"{len(summary.failed)} failed"
    )
    if interrupted:
        line += f", {summary.total - done} not reached (rerun to finish them)"
    if summary.warned:
        line += f", {summary.warned} with warnings (see {out_dir}/warnings.jsonl)"
    print(printable(line), file=sys.stderr)
    for path, reason in summary.failed[:10]:
        print(printable(f"  {path}: {reason}"), file=sys.stderr)
    if len(summary.failed) > 10:
        print(f"  ... {len(summary.failed) - 10} more", file=sys.stderr)
    if summary.failed:
        print(printable(f"all failures: {summary.errors_path}"), file=sys.stderr)

"""``clamp3 convert``: MusicXML/MIDI trees -> interleaved ABC/MTF trees, and back."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert a tree: MusicXML -> interleaved .abc, MIDI -> .mtf (or back with --to)",
        description=(
            "Mirror IN_DIR into OUT_DIR, converting every file as the official CLaMP 3 pipeline does: "
            "MusicXML (.xml .musicxml .mxl) -> interleaved ABC (.abc), MIDI (.mid .midi) -> MTF (.mtf). "
            "With --to midi: .mtf -> .mid; with --to musicxml: .abc -> .xml. Finished outputs are "
            "skipped on rerun; failures are listed in OUT_DIR/errors.jsonl. Exit status 1 if any file failed."
        ),
    )
    p.add_argument("input", metavar="IN_DIR", help="directory to convert (searched recursively)")
    p.add_argument("output", metavar="OUT_DIR", help="directory for the mirrored outputs")
    p.add_argument("--to", choices=["symbolic", "midi", "musicxml"], default="symbolic", help="direction")
    p.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: CPU count; 1 = none)"
    )
    p.add_argument(
        "--standard-abc",
        metavar="DIR",
        default=None,
        help="also write the standard (non-interleaved) ABC here",
    )
    p.add_argument("--overwrite", action="store_true", help="convert again even if the output exists")
    p.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds per file before it counts as failed (0 = no limit)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_convert)


def _convert(args: argparse.Namespace) -> int:
    from clamp3.preprocess import convert_tree

    try:
        summary = convert_tree(
            args.input,
            args.output,
            to=args.to,
            workers=args.workers,
            standard_abc_dir=args.standard_abc,
            overwrite=args.overwrite,
            timeout=args.timeout or None,
            show_progress=not args.quiet,
        )
    except NotADirectoryError as exc:
        print(f"clamp3 convert: {exc}", file=sys.stderr)
        return 2
    line = (
        f"{summary.total} files: {summary.converted} converted, {summary.skipped} already done, "
        f"{len(summary.failed)} failed"
    )
    if summary.warned:
        line += f", {summary.warned} with warnings (see {args.output}/warnings.jsonl)"
    print(line, file=sys.stderr)
    for path, reason in summary.failed[:10]:
        print(f"  {path}: {reason}", file=sys.stderr)
    if len(summary.failed) > 10:
        print(f"  ... {len(summary.failed) - 10} more", file=sys.stderr)
    if summary.failed:
        print(f"all failures: {summary.errors_path}", file=sys.stderr)
    return 1 if summary.failed else 0

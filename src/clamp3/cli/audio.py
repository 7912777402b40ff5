"""``clamp3 extract-audio``: a folder of audio files -> official-format MERT feature files."""

from __future__ import annotations

import argparse

from clamp3.cli.args import add_quiet_flag, positive_int, require_existing


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "extract-audio",
        help="wav/flac/ogg/mp3 tree -> OUT/<rel>.npy MERT features (1, n_windows, 768), resumable",
    )
    p.add_argument("input", help="folder of audio files (searched recursively)")
    p.add_argument("output", help="folder for the .npy files and errors.jsonl")
    p.add_argument(
        "--model",
        default="m-a-p/MERT-v1-95M",
        help="MERT hub id or local folder (config.json + weights); 'logmel:DIM' for the offline front-end",
    )
    p.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:1, mps ... (default: cuda if available, else cpu)"
    )
    p.add_argument(
        "--dtype",
        default=None,
        help="float32 (default, exact), float16 (GPU) or bfloat16 (GPU, or a CPU with bf16 instructions: ~2x faster, ~1e-2 off)",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="5-s windows per forward pass (default: 1 on CPU, 8 on GPU)",
    )
    add_quiet_flag(p)
    p.set_defaults(handler=_extract)


def _extract(args: argparse.Namespace) -> int:
    from clamp3.audio import LogMelFrontend, MertExtractor
    from clamp3.audio.extract import extract_tree
    from clamp3.utils.errorlog import ERRORS_NAME
    from clamp3.utils.errors import UsageError

    # A bad --model, --dtype or folder ends in cli.main: one line, exit status 2.
    require_existing(args.input)  # before MERT loads
    if args.model.startswith("logmel:"):
        dim = args.model.split(":", 1)[1]
        if not dim.isdigit() or int(dim) < 1:
            raise UsageError(f"--model logmel:DIM needs a whole number of mel bands, got {args.model!r}")
        frontend = LogMelFrontend(int(dim), batch_size=args.batch_size or 16)
    else:
        frontend = MertExtractor.from_pretrained(
            args.model, device=args.device or "auto", dtype=args.dtype, batch_size=args.batch_size
        )
    progress = not args.quiet
    report = extract_tree(args.input, args.output, frontend, show_progress=progress, source=args.model)
    print(f"wrote {report.written}, skipped {report.skipped} existing, failed {len(report.failed)}")
    for rel, reason in report.failed:
        print(f"  failed: {rel}: {reason}")
    if report.failed:
        print(f"(failures are logged in {args.output}/{ERRORS_NAME})")
    return 1 if report.failed else 0

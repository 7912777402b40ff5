"""``clamp3 embed IN OUT --model M``: a folder of music and texts -> official-layout ``.npy`` files."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from clamp3.cli.args import (
    add_captioner_argument,
    add_model_arguments,
    add_quiet_flag,
    add_timeout_argument,
    non_negative_int,
    pipeline_of,
    positive_int,
    timeout_of,
)

if TYPE_CHECKING:
    from clamp3.embed_folder import EmbedReport


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "embed",
        help="embed a folder (scores, MIDI, audio, MERT .npy, .txt, images) into OUT/<name>.npy as the official extractor",
        description="Writes OUT/<relative path without extension>.npy (float32 (1, D), not normalised), "
        "OUT/manifest.jsonl (with the model's absolute path or tag and its fingerprint) and "
        "OUT/errors.jsonl (each failure as it happens). A rerun skips finished files; OUT holding another "
        "model's or the other pooling's embeddings is refused unless --overwrite. OUT and earlier outputs "
        "inside IN are not embedded. Under torchrun each rank embeds its share of the files. Exit status: "
        "0 all embedded, 1 some files failed or IN holds no supported file, 2 bad usage or input. Images "
        "(.png .jpg .jpeg .webp) are embedded as their --captioner caption (as text; recorded in the manifest).",
    )
    p.add_argument("input", help="input folder (searched recursively) or one file")
    p.add_argument("output", help="output folder")
    add_model_arguments(p)
    add_captioner_argument(p)
    p.add_argument(
        "--unpooled", action="store_true", help="write (1, n, H) last hidden states instead of (1, D)"
    )
    p.add_argument(
        "--modality",
        choices=("text", "symbolic", "audio"),
        default=None,
        help="only files of this modality (images are text: their captions)",
    )
    p.add_argument("--batch-size", type=positive_int, default=32, help="segments per forward pass")
    p.add_argument(
        "--workers",
        type=non_negative_int,
        default=0,
        help="processes converting MusicXML/MIDI (0: in-process)",
    )
    add_timeout_argument(p, 300.0, "one MusicXML/MIDI conversion")
    p.add_argument(
        "--chunk-size", type=positive_int, default=64, help="files prepared and embedded per round"
    )
    p.add_argument(
        "--overwrite", action="store_true", help="re-embed every file, replacing what OUT holds (any model)"
    )
    p.add_argument(
        "--prune",
        action="store_true",
        help="delete the embeddings of files embedded from IN before and gone from it now (kept otherwise)",
    )
    add_quiet_flag(p)
    p.set_defaults(handler=_embed)


def _embed(args: argparse.Namespace) -> int:
    from clamp3.embed_folder import check_paths, embed_folder, shard_from_env

    check_paths(args.input, args.output)  # before the model loads: a typo costs no download
    report = embed_folder(
        pipeline_of(args),
        args.input,
        args.output,
        pooled=not args.unpooled,
        modality=args.modality,
        batch_size=args.batch_size,
        workers=args.workers,
        timeout=timeout_of(args),
        chunk_size=args.chunk_size,
        shard=shard_from_env(),
        model_id=str(args.model),
        overwrite=args.overwrite,
        prune=args.prune,
        show_progress=not args.quiet,
    )
    _say_vanished(report, args)
    if report.found == 0:
        from clamp3.inputs import extensions

        kind = f"{args.modality} " if args.modality else ""
        print(
            f"warning: {args.input}: no supported {kind}files to embed "
            f"(looked for {' '.join(sorted(extensions(args.modality)))}); nothing embedded",
            file=sys.stderr,
        )
        return 1
    # Each failure was printed when it happened and is in errors.jsonl; this is the summary.
    print(
        f"embedded {report.embedded}, skipped {report.skipped} already done, failed {report.failed} "
        f"(of {report.total}) -> {args.output}",
        file=sys.stderr,
    )
    return 1 if report.failed else 0


def _say_vanished(report: EmbedReport, args: argparse.Namespace) -> None:
    """One line on the files embedded before and gone from the input now."""
    if not report.vanished:
        return
    n, example = len(report.vanished), report.vanished[0]
    files = f"{n} file{'' if n == 1 else 's'}"
    if report.pruned:
        print(
            f"pruned the embeddings of {files} gone from {args.input} (e.g. {example}); "
            f"`clamp3 index {args.output} INDEX_DIR --sync` takes them out of an index",
            file=sys.stderr,
        )
    else:
        print(
            f"warning: {files} embedded before {'is' if n == 1 else 'are'} gone from {args.input} "
            f"(e.g. {example}); the embeddings are kept (--prune deletes them)",
            file=sys.stderr,
        )

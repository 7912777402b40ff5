"""``clamp3 embed IN OUT --model M``: a folder of music and texts -> official-layout ``.npy`` files."""

from __future__ import annotations

import argparse
import os
import sys

DTYPES = ("fp32", "fp16", "bf16")


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """--model / --device / --dtype, shared by every sub-command that runs the model."""
    p.add_argument(
        "--model", "-m", default="saas", help="model directory, official .pth, or tag (saas, c2, clamp2, m3)"
    )
    p.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:1, mps ... (default: cuda if available, else cpu)"
    )
    p.add_argument("--dtype", choices=DTYPES, default=None, help="default fp32 on CPU, fp16 on GPU")


def load_model(args: argparse.Namespace):
    """The model of ``--model`` on ``--device`` in ``--dtype`` (towers load on first use)."""
    import torch

    from clamp3.model import Clamp3Model

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and "LOCAL_RANK" in os.environ:  # one GPU per torchrun process
        device = f"cuda:{os.environ['LOCAL_RANK']}"
    dtype_name = args.dtype or ("fp32" if device == "cpu" else "fp16")
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype_name]
    return Clamp3Model.from_pretrained(args.model, device=device, dtype=dtype)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "embed",
        help="embed a folder (scores, MIDI, audio, MERT .npy, .txt) into OUT/<name>.npy as the official extractor",
        description="Writes OUT/<relative path without extension>.npy (float32 (1, D), not normalised), "
        "OUT/manifest.jsonl and OUT/errors.jsonl. A rerun skips finished files. Under torchrun each rank "
        "embeds its share of the files. Exit status 1 if any file failed.",
    )
    p.add_argument("input", help="input folder (searched recursively)")
    p.add_argument("output", help="output folder")
    add_model_arguments(p)
    p.add_argument(
        "--unpooled", action="store_true", help="write (1, n, H) last hidden states instead of (1, D)"
    )
    p.add_argument(
        "--modality", choices=("text", "symbolic", "audio"), default=None, help="only files of this modality"
    )
    p.add_argument("--batch-size", type=int, default=32, help="segments per forward pass")
    p.add_argument(
        "--workers", type=int, default=0, help="processes converting MusicXML/MIDI (0: in-process)"
    )
    p.add_argument("--chunk-size", type=int, default=64, help="files prepared and embedded per round")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=_embed)


def _embed(args: argparse.Namespace) -> int:
    from clamp3.embed_folder import embed_folder, shard_from_env

    model = load_model(args)
    report = embed_folder(
        model,
        args.input,
        args.output,
        pooled=not args.unpooled,
        modality=args.modality,
        batch_size=args.batch_size,
        workers=args.workers,
        chunk_size=args.chunk_size,
        shard=shard_from_env(),
        model_id=str(args.model),
        show_progress=not args.no_progress,
    )
    for rel, reason in report.failures:
        print(f"error: {rel}: {reason}", file=sys.stderr)
    print(
        f"embedded {report.embedded}, skipped {report.skipped} already done, failed {report.failed} "
        f"(of {report.total}) -> {args.output}",
        file=sys.stderr,
    )
    return 1 if report.failed else 0

"""``clamp3 export-onnx``: a model -> verified ONNX tower graphs for the ONNX Runtime backend."""

from __future__ import annotations

import argparse
import sys

from clamp3.utils.errors import InputError

TOWERS = ("text", "symbolic", "audio", "mert")


def _towers(value: str) -> list[str]:
    towers = [t.strip() for t in value.split(",") if t.strip()]
    unknown = [t for t in towers if t not in TOWERS]
    if not towers or unknown:
        raise argparse.ArgumentTypeError(
            f"towers are a comma-separated subset of {','.join(TOWERS)}, got {value!r}"
        )
    return towers


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export-onnx",
        help="export the towers to ONNX (fp32, int8 or fp16) for the torch-free ONNX Runtime backend",
        description=(
            "Writes OUT/<tower>.onnx (one graph per tower: encoder + masked-mean pooling + projection, dynamic "
            "batch and length, opset 18), OUT/config.json, OUT/tokenizer.json and OUT/onnx.json. Each graph is "
            "run with ONNX Runtime on fixed inputs and compared with the torch model before it is kept (fp32 "
            "within 1e-4; int8/fp16 cosine >= 0.99); a mismatch is an error and leaves nothing in OUT. OUT then "
            "works as --model for search, embed, serve and zero-shot."
        ),
    )
    p.add_argument("model", metavar="MODEL", help="model directory, official .pth, or tag")
    p.add_argument("output", metavar="OUT", help="directory to write (must not exist unless --overwrite)")
    p.add_argument(
        "--towers", type=_towers, default=None, help="comma-separated towers (default: all the model has)"
    )
    p.add_argument("--quantize", choices=["int8"], default=None, help="dynamic int8 quantisation (CPU)")
    p.add_argument(
        "--fp16", action="store_true", help="float16 graphs (for GPUs; inputs/outputs stay float32)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace OUT")
    p.set_defaults(handler=_export)


def _export(args: argparse.Namespace) -> int:
    if args.quantize and args.fp16:
        raise InputError("--quantize int8 --fp16", "choose one: int8 for CPUs or fp16 for GPUs")
    from clamp3.onnx.export import export_onnx

    precision = "int8" if args.quantize else "fp16" if args.fp16 else "fp32"
    manifest = export_onnx(args.model, args.output, args.towers, precision, overwrite=args.overwrite)
    for modality, entry in manifest.towers.items():
        check = entry.check
        print(
            f"{modality:<9} {entry.graph:<14} {precision}: max |diff| to torch {check['max_abs_diff']:.2e}, "
            f"min cosine {check['min_cosine']:.6f}",
            file=sys.stderr,
        )
    print(f"wrote {args.output} ({precision}, opset {manifest.opset})")
    return 0

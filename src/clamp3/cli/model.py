"""``clamp3 convert-checkpoint`` and ``clamp3 presets`` (architectures, training stages, recipes)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert-checkpoint",
        help="official .pth (CLaMP 3, CLaMP 2, M3) or tag -> config.json + model.safetensors",
    )
    p.add_argument("source", help="official checkpoint file, tag (saas, c2, clamp2, m3) or model directory")
    p.add_argument("output", help="directory to write")
    p.add_argument("--config", default=None, help="architecture preset when sizes differ from the official")
    p.set_defaults(handler=_convert)

    p = sub.add_parser("presets", help="list the architecture presets, training stage presets and recipes")
    p.set_defaults(handler=_presets, only_training=False)
    p = sub.add_parser("train-presets")  # the former command for the training part, hidden
    p.set_defaults(handler=_presets, only_training=True)


def _convert(args: argparse.Namespace) -> int:
    from clamp3.model import Clamp3Model
    from clamp3.tokenizer import TokenizerNotFound

    model = Clamp3Model.from_pretrained(args.source, config=args.config, modalities=None)
    out = model.save_pretrained(args.output)
    print(f"wrote {out} ({model.config.name}: {', '.join(model.config.modalities)})")
    if model.config.text is not None and not (out / "tokenizer.json").is_file():
        # Keep the tokenizer next to the weights so the directory works offline on its own.
        from clamp3.pipeline import Clamp3Pipeline

        try:
            tokenizer = Clamp3Pipeline(model).tokenizer
            tokenizer.save(out)
            print(f"copied the text tokenizer ({tokenizer.source}) into {out}")
        except TokenizerNotFound as exc:
            print(f"note: tokenizer not copied: {exc}")
    return 0


def _presets(args: argparse.Namespace) -> int:
    from clamp3.config import list_presets, load_preset

    if not args.only_training:
        for name in list_presets():
            cfg = load_preset(name)
            print(f"{name:8s} towers: {', '.join(cfg.modalities)}")
    try:
        from clamp3.train.config import list_recipes, list_stage_presets, recipe_stages, stage_from_dict
    except ImportError:  # the train extra is not installed: architecture presets only
        return 0
    for name in list_stage_presets():
        stage = stage_from_dict(name)
        o = stage.optim
        print(
            f"stage  {name:22s} {stage.task:11s} {stage.modality:8s} train={','.join(stage.train):14s} "
            f"lr={o.lr:g} batch={o.batch_size} epochs={o.epochs}"
        )
    for name in list_recipes():
        print(f"recipe {name:22s} " + " -> ".join(s.name for s in recipe_stages(name)))
    return 0

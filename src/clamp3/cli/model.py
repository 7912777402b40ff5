"""``clamp3 convert-checkpoint`` and ``clamp3 presets`` (architectures, training stages, recipes)."""

from __future__ import annotations

import argparse
import dataclasses


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert-checkpoint",
        help="official .pth (CLaMP 3, CLaMP 2, M3) or tag -> config.json + model.safetensors",
    )
    p.add_argument("source", help="official checkpoint file, tag (saas, c2, clamp2, m3) or model directory")
    p.add_argument("output", help="directory to write")
    p.add_argument("--config", default=None, help="architecture preset when sizes differ from the official")
    p.set_defaults(handler=_convert)

    p = sub.add_parser(
        "presets",
        help="list the architecture presets, training stage presets and recipes",
        description="Without NAME, one line per preset. With NAME, its settings as JSON, keyed by what "
        "it is: architecture (the config it gives a model), stage (a training stage) and/or recipe (its "
        "stages in order).",
    )
    p.add_argument("name", nargs="?", default=None, metavar="NAME", help="a preset or recipe to show in full")
    p.set_defaults(handler=_presets, only_training=False)
    p = sub.add_parser("train-presets")  # the former command for the training part, hidden
    p.set_defaults(handler=_presets, only_training=True, name=None)


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

    if args.name is not None:
        return _show_preset(args.name)
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


def _show_preset(name: str) -> int:
    """Print what ``name`` is, as JSON keyed by kind: ``architecture`` (a model preset),
    ``stage`` (a training stage preset), ``recipe`` (its stages in order); a name may be several
    (``saas`` is an architecture and a recipe)."""
    import json

    from clamp3.config import list_presets, load_preset

    found: dict[str, object] = {}
    if name in list_presets():
        found["architecture"] = load_preset(name).to_dict()
    try:
        from clamp3.train.config import list_recipes, list_stage_presets, recipe_stages, stage_from_dict
    except ImportError:  # the train extra is not installed: architecture presets only
        list_recipes = list_stage_presets = lambda: []  # noqa: E731
    if name in list_stage_presets():
        found["stage"] = dataclasses.asdict(stage_from_dict(name))
    if name in list_recipes():
        found["recipe"] = [dataclasses.asdict(stage) for stage in recipe_stages(name)]
    if not found:
        raise ValueError(f"no preset or recipe named {name!r}; `clamp3 presets` lists them")
    print(json.dumps(found, indent=2, ensure_ascii=False))
    return 0

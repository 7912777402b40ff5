"""``clamp3 train`` and ``clamp3 pretrain-m3``: run a training config (see clamp3.train)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    for name, help_text in (
        ("train", "contrastive training: the stages of a run config (e.g. the SAAS recipe or a fine-tune)"),
        ("pretrain-m3", "M3 pre-training of the symbolic encoder (masked patch reconstruction)"),
    ):
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text + ". Multi-GPU: torchrun "
            "--nproc_per_node=N -m clamp3.cli.main " + name + " CONFIG.json",
        )
        p.add_argument("config", help="run config JSON (output_dir, stages or recipe, data, init_from...)")
        p.add_argument("--resume", action="store_true", help="continue the run in output_dir")
        p.add_argument(
            "--stop-after",
            type=int,
            default=None,
            metavar="STEPS",
            help="checkpoint and stop after this many optimizer steps (resume later)",
        )
        p.set_defaults(handler=_run, task="m3" if name == "pretrain-m3" else "contrastive")

    p = sub.add_parser("train-presets", help="list the training stage presets and recipes")
    p.set_defaults(handler=_presets)


def _run(args: argparse.Namespace) -> int:
    from clamp3.train.config import load_train_config
    from clamp3.train.distributed import shutdown
    from clamp3.train.runner import train
    from clamp3.utils.errors import InputError

    try:
        config = load_train_config(args.config)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    tasks = {stage.task for stage in config.stages}
    if tasks != {args.task}:
        other = "pretrain-m3" if args.task == "contrastive" else "train"
        raise SystemExit(f"{args.config}: its stages are {sorted(tasks)} tasks; use `clamp3 {other}`")
    try:
        best = train(config, resume=args.resume, stop_after=args.stop_after)
    except (InputError, FileExistsError) as exc:  # bad data or an existing run: no traceback
        raise SystemExit(f"error: {exc}") from None
    finally:
        shutdown()  # leave the torchrun process group cleanly
    if best is None:
        print(f"stopped after {args.stop_after} steps; continue with --resume ({config.output_dir})")
    else:
        print(f"best model: {best}")
    return 0


def _presets(args: argparse.Namespace) -> int:
    from clamp3.train.config import list_recipes, list_stage_presets, recipe_stages, stage_from_dict

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

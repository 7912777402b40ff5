"""``clamp3 train`` and ``clamp3 pretrain-m3``: run a training config (see clamp3.train)."""

from __future__ import annotations

import argparse
import os
import sys


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
            "--allow-config-change",
            action="store_true",
            help="with --resume: accept a config that differs from the run's (logged; the old one is kept)",
        )
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
    """Exit status: 0 done or stopped by --stop-after; 2 bad config, data or setup (one line on
    stderr, the traceback with -v); 128 + the signal after SIGTERM / SIGINT (143 / 130), once
    the checkpoint is written. Only rank 0 prints under torchrun."""
    from clamp3.train.config import load_train_config
    from clamp3.train.distributed import shutdown
    from clamp3.train.interrupt import TrainingInterrupted
    from clamp3.train.runner import train

    main_rank = os.environ.get("RANK", "0") == "0"
    try:
        config = load_train_config(args.config)
        tasks = {stage.task for stage in config.stages}
        if tasks != {args.task}:
            other = "pretrain-m3" if args.task == "contrastive" else "train"
            raise ValueError(f"{args.config}: its stages are {sorted(tasks)} tasks; use `clamp3 {other}`")
        best = train(config, args.resume, args.stop_after, args.allow_config_change)
    except TrainingInterrupted as exc:
        if main_rank:
            print(f"{exc} ({config.output_dir})", file=sys.stderr)
        return exc.exit_code
    except (ValueError, FileExistsError, ImportError) as exc:  # bad config, data or setup
        if args.verbose:
            raise
        if main_rank:
            print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        shutdown()  # leave the torchrun process group cleanly
    if main_rank and best is None:
        print(f"stopped after {args.stop_after} steps; continue with --resume ({config.output_dir})")
    elif main_rank:
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

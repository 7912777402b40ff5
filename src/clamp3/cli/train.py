"""``clamp3 train``: run a training config (see clamp3.train), contrastive or M3 stages alike."""

from __future__ import annotations

import argparse
import os
import sys

from clamp3.cli.args import positive_int


def register(sub: argparse._SubParsersAction) -> None:
    help_text = "run a training config: its stages (M3 pre-training, contrastive, a fine-tune)"
    for name in ("train", "pretrain-m3"):  # pretrain-m3: the former name for M3 configs, hidden
        p = sub.add_parser(
            name,
            help=help_text if name == "train" else None,
            description=help_text + '. The stages say the task ("task": "m3" or "contrastive"); '
            "a recipe is a list of stages (`clamp3 presets` lists them). Multi-GPU: torchrun "
            "--nproc_per_node=N -m clamp3.cli.main train CONFIG.json",
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
            type=positive_int,
            default=None,
            metavar="STEPS",
            help="checkpoint and stop after this many optimizer steps (resume later)",
        )
        p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    """Exit status: 0 done or stopped by --stop-after; 2 bad config, data or setup (one line on
    stderr, the traceback with -v); 128 + the signal after SIGTERM / SIGINT (143 / 130), once
    the checkpoint is written. Only rank 0 prints under torchrun."""
    from clamp3.train.config import load_train_config
    from clamp3.train.distributed import shutdown
    from clamp3.train.interrupt import TrainingInterrupted
    from clamp3.train.runner import train

    main_rank = os.environ.get("RANK", "0") == "0"
    config = load_train_config(args.config)  # a bad config ends in cli.main: one line, exit 2
    try:
        best = train(config, args.resume, args.stop_after, args.allow_config_change)
    except TrainingInterrupted as exc:
        if main_rank:
            print(f"{exc} ({config.output_dir})", file=sys.stderr)
        return exc.exit_code
    finally:
        shutdown()  # leave the torchrun process group cleanly
    if main_rank and best is None:
        print(f"stopped after {args.stop_after} steps; continue with --resume ({config.output_dir})")
    elif main_rank:
        print(f"best model: {best}")
    return 0

"""Run a training config: its stages in order, each starting from the previous stage's best.

Output directory::

    RUN/train_config.json      the resolved config (clamp3.train.rundir; compared on resume)
    RUN/data_check.json        the cached data check; RUN/bad_items.jsonl its bad files
    RUN/log.jsonl              every stage's train / eval / event records (clamp3.train.logger)
    RUN/stages/NN-<name>/      checkpoints/, best/, done.json (clamp3.train.checkpoint)
    RUN/best/                  the final model: a save_pretrained directory (+ tokenizer.json)

With ``resume=True`` finished stages are skipped and the first unfinished one continues from
its latest checkpoint (or starts from the previous stage's best when it has none).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from clamp3.model import Clamp3Model
from clamp3.tokenizer import TOKENIZER_FILE, TextTokenizer, load_tokenizer
from clamp3.train.checkpoint import BEST_DIR, DONE_FILE, checkpoint_step, copy_dir, latest_checkpoint
from clamp3.train.config import StageConfig, TrainConfig
from clamp3.train.data import PairSource, load_pair_split, without_bad_files
from clamp3.train.distributed import DistEnv, barrier, init_distributed
from clamp3.train.initialization import load_stage_model
from clamp3.train.interrupt import StopRequests, TrainingInterrupted
from clamp3.train.logger import RunLog, check_backends
from clamp3.train.loop import StageJob, StepBudget, fit
from clamp3.train.loss import InfoNCELoss
from clamp3.train.m3 import M3Task, PatchSource, save_decoder
from clamp3.train.records import list_symbolic_files, records_for, split_indices
from clamp3.train.rundir import describe_changes, open_run, previous_configs
from clamp3.train.screening import BAD_ITEMS_FILE, screen_data
from clamp3.train.task import ContrastiveTask, freeze

log = logging.getLogger(__name__)


def train(
    config: TrainConfig,
    resume: bool = False,
    stop_after: int | None = None,
    allow_config_change: bool = False,
) -> Path | None:
    """Run every stage of ``config``; return ``RUN/best`` (None when ``stop_after`` optimizer
    steps were taken before the end: a checkpoint was written, resume to continue).

    Before any step: a missing optional logger is an ``ImportError``; ``resume`` with a
    config that differs from the saved one an ``InputError`` (unless ``allow_config_change``);
    every data file is checked (:mod:`clamp3.train.screening`). SIGTERM / SIGINT raise
    :class:`TrainingInterrupted` after the step in progress is checkpointed. Under torchrun
    every process calls this with the same config.
    """
    config.validate()
    budget = StepBudget(stop_after)
    env = init_distributed(config.device)
    if env.is_main:
        check_backends(config.tensorboard, config.wandb_project)
    changes = open_run(config, env, resume, allow_config_change)
    out = Path(config.output_dir)
    run_log = RunLog(
        out / "log.jsonl",
        enabled=env.is_main,
        tensorboard_dir=out / "tensorboard" if config.tensorboard else None,
        wandb_project=config.wandb_project,
        run_config=config.to_dict(),
    )
    try:
        if changes:
            _record_config_change(run_log, changes, out, env)
        with StopRequests(announce=env.is_main) as stops:
            bad = screen_data(config, env)
            return _run_stages(config, env, run_log, bad, resume, budget, stops)
    finally:
        run_log.close()


def _run_stages(
    config: TrainConfig,
    env: DistEnv,
    run_log: RunLog,
    bad: Mapping[str, str],
    resume: bool,
    budget: StepBudget,
    stops: StopRequests,
) -> Path | None:
    out = Path(config.output_dir)
    previous: Path | None = None
    for index, stage in enumerate(config.stages):
        directory = out / "stages" / f"{index + 1:02d}-{stage.name}"
        if (directory / DONE_FILE).is_file():
            previous = directory / BEST_DIR
            continue
        # Between stages: a budget used up by the last stage, or a stop signal, ends the
        # run here rather than after one step of the next stage.
        if budget.exhausted:
            return None
        signum = stops.agreed(env)
        if signum:
            done = " (the stages before it are done)" if index else ""
            raise TrainingInterrupted(signum, f"before stage {stage.name!r}{done}")
        checkpoint = latest_checkpoint(directory) if resume else None
        job = build_job(config, stage, directory, env, run_log, previous, checkpoint, bad)
        if not fit(job, checkpoint, budget, stops):
            return None
        previous = directory / BEST_DIR
    if env.is_main:
        copy_dir(previous, out / BEST_DIR)
    barrier()
    return out / BEST_DIR


def _record_config_change(
    run_log: RunLog, changes: dict[str, tuple[Any, Any]], out: Path, env: DistEnv
) -> None:
    kept = previous_configs(out)[-1] if env.is_main else None
    event = {"kind": "event", "stage": None, "step": None, "event": "config-change"}
    run_log.write(
        {**event, "changes": {k: list(v) for k, v in changes.items()}, "previous_config": str(kept)}
    )
    if env.is_main:
        log.warning(
            "resuming with a changed config (%s); the earlier one is kept as %s",
            describe_changes(changes),
            kept,
        )


def build_job(
    config: TrainConfig,
    stage: StageConfig,
    directory: Path,
    env: DistEnv,
    run_log: RunLog,
    previous: Path | None,
    checkpoint: Path | None,
    bad: Mapping[str, str],
) -> StageJob:
    """Model (with frozen towers), task, data sources (without the ``bad`` files) and the
    save function of one stage."""
    model, decoder = load_stage_model(config, stage, previous, checkpoint)
    model.to(env.device)
    freeze(model, stage.train)
    tokenizer = None
    if stage.task == "m3":
        task: nn.Module = M3Task(model, decoder)
        train_source, eval_source, skipped = m3_sources(config, stage, model, bad)
    else:
        tokenizer = resolve_tokenizer(config, model)
        train_source, eval_source, skipped = pair_sources(config, stage, model, tokenizer, bad)
        loss = InfoNCELoss(stage.contrastive.logit_scale, stage.contrastive.normalize)
        task = ContrastiveTask(model, stage.modality, loss, packed=stage.contrastive.packed)
    task.to(env.device)
    if env.is_main:
        n_eval = len(eval_source) if eval_source is not None else 0
        start = f"from step {checkpoint_step(checkpoint)}" if checkpoint is not None else "from its start"
        message = "stage %s (%s): %d training items, %d validation items"
        log.info(message, stage.name, start, len(train_source), n_eval)
        if stage.task != "m3" and n_eval == 1:
            log.warning(
                "stage %s: one validation item is always ranked first (loss 0), so no checkpoint can "
                "beat the first one validated: give eval data with two items or more",
                stage.name,
            )
        if skipped:
            where = Path(config.output_dir) / BAD_ITEMS_FILE
            log.warning(
                "stage %s: %d items left out for bad files (listed in %s)", stage.name, skipped, where
            )

    def save_model(target: Path) -> None:
        model.save_pretrained(target)
        if tokenizer is not None:
            tokenizer.save(target)
        if decoder is not None:
            save_decoder(decoder, target)

    return StageJob(
        config, stage, directory, env, task, list(stage.train), train_source, eval_source, save_model, run_log
    )


def resolve_tokenizer(config: TrainConfig, model: Clamp3Model) -> TextTokenizer:
    """``config.tokenizer`` (a directory or a tokenizer.json), else the model directory's,
    else the model config's hub tokenizer."""
    if config.tokenizer:
        path = Path(config.tokenizer)
        return TextTokenizer.from_file(path / TOKENIZER_FILE if path.is_dir() else path)
    return load_tokenizer(model.config.tower("text"), model.asset_directory)


# ------------------------------------------------------------------------------------ data
def pair_sources(
    config: TrainConfig,
    stage: StageConfig,
    model: Clamp3Model,
    tokenizer: TextTokenizer,
    bad: Mapping[str, str],
) -> tuple[PairSource, PairSource | None, int]:
    """(training pairs, validation pairs or None, number of records left out for bad files)."""
    train_path = config.train_data[stage.modality]
    eval_path = config.eval_data.get(stage.modality)
    records, held, base, eval_base = load_pair_split(train_path, eval_path, config.eval_fraction, config.seed)
    records, held = records_for(records, stage.modality), records_for(held, stage.modality)
    total = len(records) + len(held)
    records, held = without_bad_files(records, base, bad), without_bad_files(held, eval_base, bad)

    def source(items: list[dict], where: Path, train: bool) -> PairSource:
        return PairSource(items, where, stage.modality, tokenizer, model.config, stage.contrastive, train)

    eval_source = source(held, eval_base, False) if held else None
    return source(records, base, True), eval_source, total - len(records) - len(held)


def m3_sources(
    config: TrainConfig, stage: StageConfig, model: Clamp3Model, bad: Mapping[str, str]
) -> tuple[PatchSource, PatchSource | None, int]:
    """(training files, validation files or None, number of bad files left out)."""
    tower = model.config.tower("symbolic")
    files = list_symbolic_files(config.train_data["symbolic"], check_files=False)
    if config.eval_data.get("symbolic"):
        held = list_symbolic_files(config.eval_data["symbolic"], check_files=False)
    else:
        train_idx, eval_idx = split_indices(len(files), config.eval_fraction, config.seed)
        files, held = [files[i] for i in train_idx], [files[i] for i in eval_idx]
    total = len(files) + len(held)
    files = [f for f in files if os.path.abspath(f) not in bad]
    held = [f for f in held if os.path.abspath(f) not in bad]
    eval_source = PatchSource(held, tower, stage.m3, train=False) if held else None
    return PatchSource(files, tower, stage.m3, train=True), eval_source, total - len(files) - len(held)

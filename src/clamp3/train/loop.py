"""The training loop of one stage: explicit, resumable, the same from one CPU to many GPUs.

One optimizer step = ``grad_accum`` micro-batches (global batch ``batch_size`` each, split
over the ranks), AdamW on the trainable parameters only, the learning rate set from
:func:`~clamp3.train.schedule.lr_at` before every update. Mixed precision on GPU: fp16
autocast with a gradient scaler (the official), or bf16 without one. After each step: log,
maybe evaluate (keeping the best model), maybe checkpoint.

Exact resume: a checkpoint holds the weights, the optimizer and scaler states, the step and
every rank's RNG states; the data of step s is a function of s. A run resumed from step N
therefore repeats an uninterrupted run bit for bit on the same hardware and software.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from clamp3.train.checkpoint import (
    BEST_DIR,
    TrainerState,
    load_checkpoint,
    replace_dir,
    save_checkpoint,
)
from clamp3.train.config import StageConfig, TrainConfig
from clamp3.train.data import BatchPlan, EvalBatches, MicroBatches, record_groups, stage_salt
from clamp3.train.distributed import DistEnv, all_reduce_sum
from clamp3.train.interrupt import StopRequests, TrainingInterrupted, ignore_stop_signals
from clamp3.train.logger import RunLog
from clamp3.train.schedule import lr_at
from clamp3.train.task import set_train_mode
from clamp3.utils.io import write_json_atomic

log = logging.getLogger(__name__)


@dataclass
class StageJob:
    """Everything :func:`fit` needs for one stage, built by :mod:`clamp3.train.runner`.

    ``task`` returns a dict of scalar tensors whose ``loss`` is backpropagated; every entry
    is logged as its mean over ranks. ``trainable`` names the towers that learn (the others
    stay in eval mode); ``save_model(dir)`` writes a loadable model directory.
    """

    run: TrainConfig
    stage: StageConfig
    directory: Path
    env: DistEnv
    task: nn.Module
    trainable: list[str]
    train_source: object
    eval_source: object | None
    save_model: Callable[[Path], None]
    log: RunLog


class StepBudget:
    """How many optimizer steps this invocation may still take (None: unlimited), over all
    stages: ``--stop-after``."""

    def __init__(self, steps: int | None):
        if steps is not None and steps < 1:
            raise ValueError(f"stop after at least one step, got {steps}")
        self.left = steps

    @property
    def exhausted(self) -> bool:
        return self.left is not None and self.left <= 0

    def spend(self) -> bool:
        """Count one step; True when the budget is now used up."""
        if self.left is None:
            return False
        self.left -= 1
        return self.left <= 0


def _precision(
    name: str, device: torch.device
) -> tuple[Callable[[], contextlib.AbstractContextManager], object]:
    """(autocast context factory, GradScaler or None) for the configured precision.

    ``auto``: fp16 autocast with a gradient scaler on GPU (the official), fp32 on CPU;
    ``bf16`` needs no scaler (its exponent range is fp32's).
    """
    if name == "auto":
        name = "fp16" if device.type == "cuda" else "fp32"
    if name == "fp16" and device.type != "cuda":
        raise ValueError("fp16 mixed precision needs a GPU; use bf16 or fp32 on CPU")
    if name == "fp32":
        return contextlib.nullcontext, None
    dtype = torch.float16 if name == "fp16" else torch.bfloat16

    def autocast() -> contextlib.AbstractContextManager:
        return torch.autocast(device_type=device.type, dtype=dtype)

    return autocast, torch.amp.GradScaler("cuda") if name == "fp16" else None


def _optimizer(task: nn.Module, stage: StageConfig) -> torch.optim.AdamW:
    params = [p for _, p in sorted(task.named_parameters()) if p.requires_grad]
    opt = stage.optim
    return torch.optim.AdamW(
        params, lr=opt.lr, betas=tuple(opt.betas), eps=opt.eps, weight_decay=opt.weight_decay
    )


def total_steps(stage: StageConfig, n_items: int, world_size: int) -> int:
    """Optimizer steps of a stage: whole epochs of full global batches, capped by max_steps."""
    opt = stage.optim
    if opt.batch_size % world_size:
        raise ValueError(
            f"stage {stage.name!r}: batch_size {opt.batch_size} does not divide by {world_size} processes"
        )
    per_epoch = n_items // opt.batch_size
    if per_epoch == 0:
        raise ValueError(
            f"stage {stage.name!r}: {n_items} training items are fewer than the batch size {opt.batch_size}"
        )
    steps = opt.epochs * per_epoch // opt.grad_accum
    return min(steps, opt.max_steps) if opt.max_steps is not None else steps


def _mean_over_ranks(values: dict[str, torch.Tensor], world_size: int) -> dict[str, float]:
    keys = sorted(values)
    stacked = all_reduce_sum(torch.stack([values[k].detach().float() for k in keys]))
    return {k: float(v) / world_size for k, v in zip(keys, stacked.cpu())}


@torch.no_grad()
def evaluate(job: StageJob, autocast: Callable[[], contextlib.AbstractContextManager]) -> dict[str, float]:
    """Mean validation metrics over every evaluation item (batches weighted by their size)."""
    task, env = job.task, job.env
    batch_size = job.stage.optim.eval_batch_size or job.stage.optim.batch_size
    batches = EvalBatches(job.eval_source, batch_size, job.run.seed, env.rank, env.world_size)
    task.eval()
    sums: dict[str, float] = {}
    count = 0
    for i in range(len(batches)):
        batch, rows = batches[i]
        with autocast():
            metrics = task(batch.to(env.device), rows=rows)
        size = batches.global_size(i)
        for key, value in _mean_over_ranks(metrics, env.world_size).items():
            sums[key] = sums.get(key, 0.0) + value * size
        count += size
    return {k: v / max(1, count) for k, v in sums.items()}


def _make_loader(job: StageJob, plan: BatchPlan, start: int, stop: int) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        MicroBatches(job.train_source, plan, start, stop),
        batch_size=None,
        shuffle=False,
        num_workers=job.run.num_workers,
        pin_memory=job.env.device.type == "cuda",
        # Its own generator: a DataLoader iterator otherwise draws its worker seed from the
        # global torch RNG, shifting the dropout masks of a resumed run by one draw.
        generator=torch.Generator().manual_seed(job.run.seed),
        worker_init_fn=ignore_stop_signals,
    )


def stop_loader_workers(loader: object) -> None:
    """Stop a ``DataLoader`` iterator's worker processes now (no-op without workers).

    torch does it when the iterator is garbage-collected. After an exception the traceback
    keeps the training frames, and so the iterator, alive until the interpreter exits, and a
    shutdown that late (modules half torn down) can wait forever: a SIGTERM'd ``clamp3 demo``
    printed where it stopped and then hung. The method is torch's own, the one its
    ``__del__`` calls.
    """
    shutdown = getattr(loader, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()


def _groups(job: StageJob) -> tuple[int, ...] | None:
    """The ``group_by`` group of each training record (None: random batches)."""
    if not job.stage.group_by:
        return None
    try:
        return record_groups(job.train_source.records, job.stage.group_by)
    except ValueError as exc:
        raise ValueError(f"stage {job.stage.name!r}: {exc}") from None


def fit(job: StageJob, checkpoint: Path | None, budget: StepBudget, stops: StopRequests) -> bool:
    """Train one stage from scratch or from ``checkpoint``; True when the stage finished,
    False when the step budget ran out first (a checkpoint was written). Raises
    :class:`TrainingInterrupted` after a stop signal, once the step's checkpoint is written."""
    run, stage, env, opt = job.run, job.stage, job.env, job.stage.optim
    groups = _groups(job)
    autocast, scaler = _precision(run.precision, env.device)
    optimizer = _optimizer(job.task, stage)
    state = _start(job, checkpoint, optimizer, scaler)
    n_items = len(job.train_source)
    steps = total_steps(stage, n_items, env.world_size)
    plan = BatchPlan(
        n_items, opt.batch_size, run.seed, stage_salt(stage.name), env.rank, env.world_size, groups,
        stage.group_size,
    )
    wrapped = _wrap(job.task, env)
    loader = iter(_make_loader(job, plan, state.step * opt.grad_accum, steps * opt.grad_accum))
    show = env.is_main and run.show_progress
    bar = tqdm(total=steps, initial=state.step, desc=stage.name, disable=not show, dynamic_ncols=True)
    set_train_mode(job.task, job.trainable)
    started = time.perf_counter()
    with logging_redirect_tqdm(), contextlib.closing(bar), contextlib.ExitStack() as cleanup:
        cleanup.callback(stop_loader_workers, loader)  # also when a signal or an error ends the stage
        while state.step < steps:
            lr = lr_at(state.step, opt.lr, opt.warmup_steps, steps, opt.schedule, opt.min_lr)
            for group in optimizer.param_groups:
                group["lr"] = lr
            metrics = _accumulate(wrapped, loader, opt.grad_accum, autocast, scaler, env)
            _update(optimizer, scaler, opt.max_grad_norm)
            state.step += 1
            bar.update(1)
            micro = state.step * opt.grad_accum
            epoch_end = micro // plan.batches_per_epoch > (micro - opt.grad_accum) // plan.batches_per_epoch
            last = state.step == steps
            if state.step % max(1, run.log_every) == 0 or last:
                epoch = micro / plan.batches_per_epoch
                _log_train(job, state.step, epoch, lr, metrics, time.perf_counter() - started, bar)
            if job.eval_source is not None and (_due(run.eval_every, state.step, epoch_end) or last):
                _evaluate_and_keep_best(job, state, autocast)
                set_train_mode(job.task, job.trainable)
            if _checkpoint_or_stop(job, state, optimizer, scaler, budget, stops, epoch_end, last):
                return False
    _finish(job, state)
    return True


def _wrap(task: nn.Module, env: DistEnv) -> nn.Module:
    """The task under DDP when there are several processes, else itself."""
    if not env.distributed:
        return task
    ids = [env.device.index] if env.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(task, device_ids=ids, broadcast_buffers=False)


def _checkpoint_or_stop(
    job: StageJob,
    state: TrainerState,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    budget: StepBudget,
    stops: StopRequests,
    epoch_end: bool,
    last: bool,
) -> bool:
    """After a step: checkpoint when due, at the stage's end, when the step budget is spent
    or a stop signal came. True when the budget ends the stage early; raises
    :class:`TrainingInterrupted` after a signal (the stage's last step just finishes it)."""
    run, env = job.run, job.env
    out_of_budget = budget.spend()
    signum = None if last else stops.agreed(env)
    if _due(run.save_every, state.step, epoch_end) or last or out_of_budget or signum:
        saved = save_checkpoint(
            job.directory, state, job.save_model, optimizer, scaler, env, run.keep_checkpoints
        )
    if signum:
        job.log.write({"kind": "event", "stage": job.stage.name, "step": state.step, "event": "interrupted"})
        raise TrainingInterrupted(signum, f"after step {state.step} of stage {job.stage.name!r} ({saved})")
    return out_of_budget and not last


def _log_train(
    job: StageJob,
    step: int,
    epoch: float,
    lr: float,
    metrics: dict[str, torch.Tensor],
    seconds: float,
    bar: tqdm,
) -> None:
    """A train record in the run log (means over ranks); on the terminal the progress bar's
    figures, or a line when there is no bar."""
    values = _mean_over_ranks(metrics, job.env.world_size)
    record = {"kind": "train", "stage": job.stage.name, "step": step, "epoch": epoch, "lr": lr}
    job.log.write({**record, **values, "seconds": round(seconds, 3)})
    bar.set_postfix(loss=f"{values['loss']:.4f}", lr=f"{lr:.2e}")
    if job.env.is_main and bar.disable:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in sorted(values.items()))
        log.info("%s step %d (epoch %.2f): %s, lr %.2e", job.stage.name, step, epoch, shown, lr)


def _start(job: StageJob, checkpoint: Path | None, optimizer, scaler) -> TrainerState:
    """Restore a checkpoint, or seed this rank's torch RNG for a fresh stage."""
    name = job.stage.name
    if checkpoint is not None:
        state = load_checkpoint(checkpoint, optimizer, scaler, job.env)
        job.log.write({"kind": "event", "stage": name, "step": state.step, "event": "resume"})
        return state
    # Dropout masks differ per rank (the official seeds with seed + rank).
    torch.manual_seed(job.run.seed + job.env.rank + stage_salt(name))
    job.log.write({"kind": "event", "stage": name, "step": 0, "event": "start"})
    return TrainerState()


def _update(optimizer: torch.optim.Optimizer, scaler, max_grad_norm: float | None) -> None:
    """Clip (after unscaling), step and clear the gradients."""
    if max_grad_norm is not None:
        if scaler is not None:
            scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(optimizer.param_groups[0]["params"], max_grad_norm)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _due(every: int | None, step: int, epoch_end: bool) -> bool:
    return step % every == 0 if every else epoch_end


def _accumulate(wrapped, loader, accum: int, autocast, scaler, env: DistEnv) -> dict[str, torch.Tensor]:
    """Forward/backward ``accum`` micro-batches; gradients are summed (each loss / accum).
    Returns the metrics averaged over the micro-batches (this rank's view)."""
    totals: dict[str, torch.Tensor] = {}
    for micro in range(accum):
        batch = next(loader).to(env.device)
        sync = micro == accum - 1 or not isinstance(wrapped, nn.parallel.DistributedDataParallel)
        with contextlib.nullcontext() if sync else wrapped.no_sync():
            with autocast():
                metrics = wrapped(batch)
            loss = metrics["loss"] / accum
            (scaler.scale(loss) if scaler is not None else loss).backward()
        for key, value in metrics.items():
            totals[key] = totals.get(key, 0.0) + value.detach().float() / accum
    return totals


def _evaluate_and_keep_best(job: StageJob, state: TrainerState, autocast) -> None:
    values = evaluate(job, autocast)
    best = values["loss"] < state.best_loss
    if best:
        state.best_loss, state.best_step = values["loss"], state.step
        if job.env.is_main:
            replace_dir(lambda d: _save_best(job, d, state), job.directory / BEST_DIR)
    job.log.write({"kind": "eval", "stage": job.stage.name, "step": state.step, **values, "best": best})
    if job.env.is_main:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in sorted(values.items()))
        news = f"; best so far, saved to {job.directory / BEST_DIR}" if best else ""
        log.info("%s step %d: validation %s%s", job.stage.name, state.step, shown, news)


def _save_best(job: StageJob, directory: Path, state: TrainerState) -> None:
    job.save_model(directory)
    loss = state.best_loss if math.isfinite(state.best_loss) else None
    info = {"stage": job.stage.name, "step": state.step, "eval_loss": loss}
    write_json_atomic(directory / "best.json", info)


def _finish(job: StageJob, state: TrainerState) -> None:
    """Without validation data the final model is the best one; mark the stage done."""
    if job.env.is_main:
        if job.eval_source is None:
            state.best_step = state.step
            replace_dir(lambda d: _save_best(job, d, state), job.directory / BEST_DIR)
        info = {"stage": job.stage.name, "steps": state.step, "best_step": state.best_step}
        info["best_eval_loss"] = state.best_loss if math.isfinite(state.best_loss) else None
        write_json_atomic(job.directory / "done.json", info)
        log.info(
            "%s: done after %d steps; best model from step %d", job.stage.name, state.step, state.best_step
        )
    job.log.write({"kind": "event", "stage": job.stage.name, "step": state.step, "event": "done"})

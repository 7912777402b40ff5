"""Stage directories: resumable checkpoints and the best model, written atomically.

Layout of one stage (``RUN/stages/NN-name/``)::

    checkpoints/step_00001000/
        model/                  save_pretrained directory (+ tokenizer.json, M3: m3_decoder.safetensors)
        trainer_state.pt        optimizer, grad scaler, TrainerState, format version
        rng_rank{R}.pt          python / numpy / torch (CPU and CUDA) RNG states of rank R
    best/                       save_pretrained directory of the best model + best.json
    done.json                   written when the stage has finished

A checkpoint is written into a hidden temporary directory and renamed into place, so a
directory named ``step_*`` is always complete. The data position needs no saving: it is a
function of the step (:mod:`clamp3.train.data`).
"""

from __future__ import annotations

import math
import os
import random
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clamp3.train.distributed import DistEnv, barrier

CHECKPOINTS = "checkpoints"
MODEL_DIR = "model"
STATE_FILE = "trainer_state.pt"
BEST_DIR = "best"
DONE_FILE = "done.json"
FORMAT = 1


@dataclass
class TrainerState:
    """Loop counters: optimizer steps done and the best validation loss so far."""

    step: int = 0
    best_loss: float = math.inf
    best_step: int = -1


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_step(path: Path) -> int:
    """The optimizer step a ``step_*`` checkpoint directory was written after."""
    return int(path.name.split("_", 1)[1])


def list_checkpoints(stage_dir: Path) -> list[Path]:
    """Complete checkpoints of a stage, oldest first."""
    root = stage_dir / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.glob("step_*") if (p / STATE_FILE).is_file()]
    return sorted(found, key=checkpoint_step)


def latest_checkpoint(stage_dir: Path) -> Path | None:
    found = list_checkpoints(stage_dir)
    return found[-1] if found else None


def _fsync_tree(root: Path) -> None:
    # Not clamp3.utils.walk: a checkpoint must reach the disk whole, hidden files included.
    for path in root.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


def save_checkpoint(
    stage_dir: Path,
    state: TrainerState,
    save_model: Callable[[Path], None],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    env: DistEnv,
    keep: int,
) -> Path:
    """Write ``checkpoints/step_<state.step>`` (every rank must call it: each adds its RNG)."""
    final = stage_dir / CHECKPOINTS / f"step_{state.step:08d}"
    tmp = final.with_name(f".{final.name}.tmp")
    if env.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_model(tmp / MODEL_DIR)
        payload = {
            "format": FORMAT,
            "trainer": asdict(state),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
        }
        torch.save(payload, tmp / STATE_FILE)
    barrier()
    torch.save(rng_state(), tmp / f"rng_rank{env.rank}.pt")
    barrier()
    if env.is_main:
        _fsync_tree(tmp)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in list_checkpoints(stage_dir)[: -max(1, keep)]:
            shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


def load_checkpoint(
    checkpoint: Path,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    env: DistEnv,
) -> TrainerState:
    """Restore optimizer, scaler and this rank's RNG; return the loop counters."""
    payload = torch.load(checkpoint / STATE_FILE, map_location="cpu", weights_only=False)
    if payload.get("format") != FORMAT:
        raise ValueError(f"{checkpoint}: unknown checkpoint format {payload.get('format')!r}")
    optimizer.load_state_dict(payload["optimizer"])
    if scaler is not None and payload["scaler"] is not None:
        scaler.load_state_dict(payload["scaler"])
    rng_file = checkpoint / f"rng_rank{env.rank}.pt"
    if not rng_file.is_file():
        raise ValueError(
            f"{checkpoint}: no RNG state for rank {env.rank}; resume with the number of "
            "processes the checkpoint was written with"
        )
    set_rng_state(torch.load(rng_file, map_location="cpu", weights_only=False))
    return TrainerState(**payload["trainer"])


def replace_dir(build: Callable[[Path], None], target: Path) -> None:
    """Build a directory next to ``target`` and swap it in (the old one is removed after)."""
    tmp = target.with_name(f".{target.name}.tmp")
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    build(tmp)
    _fsync_tree(tmp)
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def copy_dir(source: Path, target: Path) -> None:
    """Atomically replace ``target`` with a copy of ``source``."""
    replace_dir(lambda tmp: shutil.copytree(source, tmp), target)

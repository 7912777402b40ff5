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
import re
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
    found = [p for p in root.glob("step_*") if re.fullmatch(r"step_\d+", p.name)]
    found = [p for p in found if (p / STATE_FILE).is_file()]
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
    """Restore optimizer, scaler and this rank's RNG; return the loop counters.

    Raises ``ValueError`` naming the file when a part is missing or unreadable (and, when the
    stage has an older checkpoint, saying that removing this one resumes from it)."""
    payload = _read_part(checkpoint / STATE_FILE)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{checkpoint / STATE_FILE}: unknown checkpoint format {found!r}")
    try:
        optimizer.load_state_dict(payload["optimizer"])
        if scaler is not None and payload["scaler"] is not None:
            scaler.load_state_dict(payload["scaler"])
        state = TrainerState(**payload["trainer"])
    except (KeyError, TypeError) as err:  # a payload missing parts; torch's ValueError (an optimizer
        # of other parameters) is no damage, and an older checkpoint would not help: it goes up as it is
        raise ValueError(f"{checkpoint / STATE_FILE}: {_damaged(checkpoint, err)}") from None
    rng_file = checkpoint / f"rng_rank{env.rank}.pt"
    if not rng_file.is_file():
        raise ValueError(
            f"{checkpoint}: no RNG state for rank {env.rank}; resume with the number of "
            "processes the checkpoint was written with"
        )
    set_rng_state(_read_part(rng_file))
    return state


def _read_part(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises RuntimeError, EOFError, UnpicklingError ... for damage
        raise ValueError(f"{path}: {_damaged(path.parent, err)}") from None


def _damaged(checkpoint: Path, err: Exception) -> str:
    """The reason a checkpoint part cannot be read, and what to do about it."""
    reason = str(err).split(". ", 1)[0] or type(err).__name__
    step = checkpoint_step(checkpoint)
    older = [p for p in list_checkpoints(checkpoint.parent.parent) if checkpoint_step(p) < step]
    fix = f"resume from {older[-1].name}" if older else "start the stage again"
    return f"damaged checkpoint ({reason}); remove {checkpoint} to {fix}"


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

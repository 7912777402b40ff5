"""Run logs: one JSONL file (always), TensorBoard and Weights & Biases (optional).

``RUN/log.jsonl`` holds one object per event, flushed as it happens::

    {"kind": "train", "stage": "symbolic", "step": 10, "epoch": 0.31, "lr": 5e-06, "loss": 3.21, "accuracy": 0.12}
    {"kind": "eval", "stage": "symbolic", "step": 32, "loss": 2.95, "accuracy": 0.2, "best": true}
    {"kind": "event", "stage": "symbolic", "step": 32, "event": "resume"}

``step`` counts optimizer updates done; ``lr`` is the rate the logged update used. After a
resume, records of steps past the checkpoint may appear twice; :func:`read_log` keeps the
last one of each (kind, stage, step).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from clamp3.utils.io import append_jsonl, read_jsonl


def check_backends(tensorboard: bool, wandb_project: str | None) -> None:
    """Raise ``ImportError`` saying what to install when a requested optional logger is
    missing; :func:`clamp3.train.train` calls it before writing anything."""
    if tensorboard:
        try:
            from torch.utils.tensorboard import SummaryWriter  # noqa: F401
        except ImportError as exc:
            raise ImportError(
                '"tensorboard": true needs the tensorboard package: pip install tensorboard'
            ) from exc
    if wandb_project is not None:
        try:
            import wandb  # noqa: F401
        except ImportError as exc:
            raise ImportError('"wandb_project" needs the wandb package: pip install wandb') from exc


class RunLog:
    """Writes events on the main process only; the other ranks hold a silent instance."""

    def __init__(
        self,
        path: Path,
        enabled: bool = True,
        tensorboard_dir: Path | None = None,
        wandb_project: str | None = None,
        run_config: dict[str, Any] | None = None,
    ):
        self.path = path
        self.enabled = enabled
        self._tb = None
        self._wandb = None
        if not enabled:
            return
        check_backends(tensorboard_dir is not None, wandb_project)
        if tensorboard_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(tensorboard_dir))
        if wandb_project is not None:
            import wandb

            self._wandb = wandb.init(
                project=wandb_project, config=run_config, dir=str(path.parent), resume="allow"
            )

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        append_jsonl(self.path, record)
        numbers = {k: v for k, v in record.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        numbers.pop("step", None)
        prefix = f"{record.get('stage', '')}/{record.get('kind', '')}"
        step = record.get("step", 0)
        if self._tb is not None:
            for key, value in numbers.items():
                self._tb.add_scalar(f"{prefix}/{key}", value, step)
        if self._wandb is not None and numbers:
            self._wandb.log({f"{prefix}/{k}": v for k, v in numbers.items()})

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def read_log(path: str | os.PathLike, kind: str | None = None) -> list[dict[str, Any]]:
    """Records of a run log, the last one of each (kind, stage, step), in step order per stage."""
    latest: dict[tuple, dict[str, Any]] = {}
    for record in read_jsonl(Path(path)):
        if kind is not None and record.get("kind") != kind:
            continue
        key = (record.get("kind"), record.get("stage"), record.get("step"), record.get("event"))
        latest.pop(key, None)  # re-insert so the order is that of the last write
        latest[key] = record
    return list(latest.values())

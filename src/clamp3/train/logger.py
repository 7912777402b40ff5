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
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise RuntimeError("tensorboard logging needs `pip install tensorboard`") from exc
            self._tb = SummaryWriter(str(tensorboard_dir))
        if wandb_project is not None:
            try:
                import wandb
            except ImportError as exc:
                raise RuntimeError("W&B logging needs `pip install wandb`") from exc
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

"""The learning rate as a pure function of the optimizer step.

No scheduler object holds state: the loop sets ``lr_at(step, ...)`` on the optimizer before
every update, so resuming needs only the step number. (The official scripts attach a warmup
scheduler to an optimizer they then replace, so their warmup never happens, §4.2.)
"""

from __future__ import annotations

import math


def lr_at(
    step: int,
    base_lr: float,
    warmup_steps: int,
    total_steps: int,
    schedule: str = "constant",
    min_lr: float = 0.0,
) -> float:
    """Learning rate of the update made at optimizer step ``step`` (0-based).

    Linear warmup ``base_lr * (step + 1) / warmup_steps`` for ``step < warmup_steps`` (so the
    first update already moves and step ``warmup_steps - 1`` reaches ``base_lr``), then
    ``constant`` at ``base_lr`` or ``cosine`` from ``base_lr`` down to ``min_lr`` at
    ``total_steps``.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return base_lr
    if schedule == "cosine":
        span = max(1, total_steps - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / span)
        return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {schedule!r} (constant or cosine)")

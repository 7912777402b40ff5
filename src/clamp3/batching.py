"""The one batch planner of the towers: pieces grouped by a token budget, longest first.

Two cost models. ``padded=False`` (the packed forward, :mod:`clamp3.towers.packed`): a batch
costs the sum of its pieces' lengths, nothing is padded, so a batch simply fills the budget.
``padded=True`` (a padded ``(B, L)`` forward): a batch costs ``B x`` its longest piece, and it
also closes when padding would exceed ``max_padding`` of its positions (a 512-patch segment
next to 60-patch ones would multiply the work).

Pieces are taken longest first in both, so within a batch equal lengths sit next to each other
(the packed forward runs attention once per run of equal lengths) and the order is
deterministic.
"""

from __future__ import annotations

import operator


def check_batch_size(batch_size: int) -> int:
    """``batch_size`` (full segments' worth of tokens per batch) as an int; ``ValueError`` for
    anything but a positive integer (0 would plan no batch, a float would truncate)."""
    try:
        size = operator.index(batch_size)
    except TypeError:
        size = 0
    if size < 1 or isinstance(batch_size, bool):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return size


def plan_batches(
    lengths: list[int],
    max_tokens: int,
    *,
    padded: bool = False,
    max_padding: float = 0.1,
    max_items: int | None = None,
) -> list[list[int]]:
    """Group piece indices (lengths >= 1) into batches of at most ``max_tokens`` tokens.

    Returns index lists covering every piece exactly once, longest pieces first, each batch in
    decreasing length. A piece longer than the budget gets a batch of its own. ``max_items``
    optionally caps the pieces per batch.
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be positive")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    total = 0
    for i in order:
        if current and _closes(current, total, lengths, i, max_tokens, padded, max_padding, max_items):
            batches.append(current)
            current, total = [], 0
        current.append(i)
        total += lengths[i]
    if current:
        batches.append(current)
    return batches


def _closes(
    current: list[int],
    total: int,
    lengths: list[int],
    i: int,
    max_tokens: int,
    padded: bool,
    max_padding: float,
    max_items: int | None,
) -> bool:
    """Whether adding piece ``i`` to the non-empty batch ``current`` breaks a limit."""
    if max_items is not None and len(current) >= max_items:
        return True
    if not padded:
        return total + lengths[i] > max_tokens
    slots = (len(current) + 1) * lengths[current[0]]  # current[0] is the batch's longest piece
    return slots > max_tokens or slots - (total + lengths[i]) > max_padding * slots

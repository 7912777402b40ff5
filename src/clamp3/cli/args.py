"""argparse value types shared by the sub-commands: a bad value is a usage error (exit status 2,
one line naming the option), never a traceback or a silently accepted zero."""

from __future__ import annotations

import argparse


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def positive_int(text: str) -> int:
    """An integer >= 1 (counts, sizes: ``--top-k``, ``--batch-size``)."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (``--workers``, where 0 means "in this process")."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (``--timeout``, where 0 means "no limit")."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):  # also refuses NaN
        raise argparse.ArgumentTypeError(f"must be a finite number, 0 or more, got {text}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (sizes and lengths: ``--max-upload-mb``, ``--seconds-max``, where 0
    would refuse everything)."""
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def add_model_mismatch_flag(
    p: argparse.ArgumentParser, what: str = "the inputs name different models"
) -> None:
    """``--allow-model-mismatch``: the one override of :func:`clamp3.model_identity.require_same_model`."""
    from clamp3.model_identity import OVERRIDE_FLAG

    p.add_argument(OVERRIDE_FLAG, action="store_true", help=f"proceed (with a warning) when {what}")

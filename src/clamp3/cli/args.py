"""Arguments shared by the sub-commands: value types (a bad value is a usage error, exit status 2,
one line naming the option, never a traceback or a silently accepted zero) and the option groups
several commands take (the model, the captioner, progress, time limits)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Any, TypeVar

from clamp3.utils.errors import InputError

T = TypeVar("T")

DTYPES = ("fp32", "fp16", "bf16")


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


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (``--timeout``, where 0 means "no limit")."""
    value = _number(text)
    if not value >= 0 or value == float("inf"):  # also refuses NaN
        raise argparse.ArgumentTypeError(f"must be a finite number, 0 or more, got {text}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (sizes and lengths: ``--max-upload-mb``, ``--seconds-max``, where 0
    would refuse everything)."""
    value = _number(text)
    if not value > 0 or value == float("inf"):  # also refuses NaN
        raise argparse.ArgumentTypeError(f"must be a finite number more than 0, got {text}")
    return value


def fraction(text: str) -> float:
    """A number from 0 to 1 (shares: ``--min-support``)."""
    value = _number(text)
    if not 0 <= value <= 1:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text}")
    return value


def http_url(text: str) -> str:
    """An ``http://`` or ``https://`` URL with a host (``--llm-url``): a typo would otherwise be
    retried as a network error, item after item."""
    from urllib.parse import urlsplit

    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"expected an http:// or https:// URL with a host, got {text!r}")
    return text


def add_model_mismatch_flag(
    p: argparse.ArgumentParser, what: str = "the inputs name different models"
) -> None:
    """``--allow-model-mismatch``: the one override of :func:`clamp3.model_identity.require_same_model`."""
    from clamp3.model_identity import OVERRIDE_FLAG

    p.add_argument(OVERRIDE_FLAG, action="store_true", help=f"proceed (with a warning) when {what}")


def add_model_arguments(p: argparse.ArgumentParser, default: str | None = "saas") -> None:
    """--model / --device / --dtype, shared by every sub-command that runs the model; ``default``
    None: the model the index records (search, serve)."""
    p.add_argument(
        "--model",
        "-m",
        default=default,
        help="model directory, official .pth, export-onnx directory, or tag (saas, c2, clamp2, m3)"
        + ("" if default else "; default: the model recorded in the index"),
    )
    p.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:1, mps ... (default: cuda if available, else cpu)"
    )
    p.add_argument("--dtype", choices=DTYPES, default=None, help="default fp32 on CPU, fp16 on GPU")


def add_captioner_argument(p: argparse.ArgumentParser) -> None:
    """--captioner, shared by the sub-commands that take image inputs (embed, search, zero-shot, serve)."""
    from clamp3.captioning import DEFAULT_CAPTIONER

    p.add_argument(
        "--captioner",
        default=DEFAULT_CAPTIONER,
        metavar="NAME_OR_DIR",
        help=f"image-to-text model that captions image inputs (.png .jpg .jpeg .webp), which are then "
        f"searched as text: a hub id or a local folder (default {DEFAULT_CAPTIONER}, as the official "
        "search); loaded only when an image is seen",
    )


def require_existing(*paths: str | os.PathLike | None) -> None:
    """``InputError(path, "no such file or folder")`` for the first of ``paths`` that is missing
    (``None`` is skipped): called before a command loads its model, so a typo in a path costs
    no model load, and no 1.8 GB download where the weights are not cached yet."""
    for path in paths:
        if path is not None and not os.path.exists(path):
            raise InputError(path, "no such file or folder")


def pipeline_of(args: argparse.Namespace, index: Any = None, one_shot: bool = False):
    """The pipeline of :func:`add_model_arguments` (and ``--captioner`` where the command has
    it): :func:`clamp3.loading.load_pipeline`, which also defaults a missing ``--model`` to
    the one ``index`` records; ``one_shot`` for a command that encodes one query."""
    from clamp3.loading import load_pipeline

    return load_pipeline(
        args.model,
        device=args.device,
        dtype=args.dtype,
        captioner=getattr(args, "captioner", None),
        index=index,
        one_shot=one_shot,
    )


def add_timeout_argument(
    p: argparse.ArgumentParser, default: float, what: str, zero: str = "no limit"
) -> None:
    """``--timeout SECONDS`` for one unit of work (``what``, e.g. "one file"), where 0 is no
    limit (``zero`` says what that means there); read it with :func:`timeout_of`."""
    p.add_argument(
        "--timeout",
        type=non_negative_float,
        default=default,
        help=f"seconds {what} may take before it fails (default {default:g}; 0: {zero})",
    )


def add_quiet_flag(p: argparse.ArgumentParser, help: str = "no progress bar") -> None:
    """``--quiet``, also spelt ``--no-progress``, into ``args.quiet``: one flag in every command
    that shows progress (both spellings were in use, and each command refused the other's)."""
    p.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true", help=help)


def timeout_of(args: argparse.Namespace) -> float | None:
    """``--timeout`` as the library takes it: seconds, or None for no limit."""
    return args.timeout or None


def settings_from(cls: type[T], args: argparse.Namespace, **given: Any) -> T:
    """The settings dataclass ``cls`` with every field that an argument of the same ``dest``
    sets taken from ``args``, ``given`` for the fields the command line spells otherwise
    (``show_progress=not args.quiet``), the rest at the dataclass's defaults."""
    names = {field.name for field in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values = {name: getattr(args, name) for name in names - given.keys() if hasattr(args, name)}
    return cls(**values, **given)


def failures_status(failed: int, what: str) -> int:
    """Exit status of a run that went on past bad inputs (each already reported): 1 if any,
    with a closing count on stderr (the contract of ``clamp3.cli.main``)."""
    if failed:
        print(f"warning: {failed} {what} (errors above)", file=sys.stderr)
    return 1 if failed else 0


def print_first_failures(lines: list[str], log: object, shown: int = 10) -> None:
    """The first ``shown`` failure lines on stderr, then how many more ``log`` holds."""
    for line in lines[:shown]:
        print(line, file=sys.stderr)
    if len(lines) > shown:
        print(f"  ... {len(lines) - shown} more in {log}", file=sys.stderr)

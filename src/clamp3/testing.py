"""Deterministic weights and fixtures shared by the tests and the benchmarks.

``deterministic_tensor`` is the weight recipe of ``shared/parity/README.md``: every tensor is
seeded by the CRC-32 of its official key name, so the official code and this package can be
compared without real weights. ``find_parity_dir`` is where the tests and the benchmarks look
for that folder.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch


def _beside_checkout() -> Path:
    """``shared/parity`` in the folder above the repository root (``src/clamp3/testing.py`` of
    an editable install); for an installed copy some other path (usually absent), never an error."""
    above = Path(__file__).resolve().parents
    return above[min(3, len(above) - 1)] / "shared" / "parity"


BESIDE_CHECKOUT = _beside_checkout()
# the workplace's copy, for clones made elsewhere on the same machine
WORKPLACE_PARITY = Path("/work/shared/parity")


def find_parity_dir() -> Path:
    """The official-code fixtures folder (``shared/parity``) the tests and benchmarks read.

    ``$CLAMP3_PARITY_DIR`` when set (even if it does not exist: a wrong setting should fail, not
    fall back); else ``shared/parity`` beside the checkout, else the workplace copy. When neither
    exists the one beside the checkout is returned, so the caller's "not found" message names
    where it was expected.
    """
    if os.environ.get("CLAMP3_PARITY_DIR"):
        return Path(os.environ["CLAMP3_PARITY_DIR"])
    return next((p for p in (BESIDE_CHECKOUT, WORKPLACE_PARITY) if p.is_dir()), BESIDE_CHECKOUT)


def deterministic_tensor(key: str, shape: Sequence[int]) -> np.ndarray:
    """float32 N(0, 1) * 0.02 seeded by crc32(key); +1 for LayerNorm/GroupNorm/ln_* gains."""
    rng = np.random.default_rng(zlib.crc32(key.encode("utf-8")))
    w = rng.standard_normal(size=tuple(shape), dtype=np.float32) * np.float32(0.02)
    last = key.split(".")
    is_gain = (
        key.endswith("LayerNorm.weight")
        or key.endswith("layer_norm.weight")
        or (key.endswith(".weight") and len(last) >= 2 and last[-2].startswith("ln"))
    )
    return w + np.float32(1.0) if is_gain else w


def deterministic_state_dict(keys: Iterable[tuple[str, Sequence[int]]]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(deterministic_tensor(k, s)) for k, s in keys}


def read_key_list(path: str | os.PathLike) -> list[tuple[str, list[int]]]:
    """A ``[[key, shape], ...]`` JSON file (the ``keys/`` lists of the parity set)."""
    return [(k, list(s)) for k, s in json.loads(Path(path).read_text())]


def write_official_checkpoint(path: str | os.PathLike, state: dict[str, torch.Tensor], **extra) -> Path:
    """An official-format checkpoint: ``{"model": state, "epoch": 0, "min_eval_loss": 0.0}``."""
    payload = {"model": state, "epoch": 0, "min_eval_loss": 0.0}
    payload.update(extra)
    torch.save(payload, path)
    return Path(path)

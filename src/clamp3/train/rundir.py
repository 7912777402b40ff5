"""The run directory's config: written at the start, compared on every resume.

``RUN/train_config.json`` is the resolved config the run follows. ``--resume`` with a config
that differs in anything that shapes the result (learning rates, batch sizes, stages, data,
seed, start weights...) is refused with the list of differences: silently continuing would
give a model that neither config describes. ``allow_config_change`` (``--allow-config-change``)
accepts the change: the earlier file is kept as ``train_config.previous-<n>.json`` and the
run log gets a ``config-change`` event. Settings that only change how the run is watched or
run (``NEUTRAL``) may change freely.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from clamp3.train.config import TrainConfig
from clamp3.train.distributed import DistEnv, barrier
from clamp3.utils.errors import InputError
from clamp3.utils.io import json_text, write_json_atomic

CONFIG_FILE = "train_config.json"
STAGES_DIR = "stages"
# Run settings that leave the trained weights as they are.
NEUTRAL = frozenset(
    (
        "output_dir",
        "show_progress",
        "num_workers",
        "log_every",
        "keep_checkpoints",
        "tensorboard",
        "wandb_project",
        "bad_items",
    )
)
# Stage settings that change how a step is computed, not what: the same losses and updates to
# float rounding (as another CPU gives), so a run made before such a setting existed, or with
# its other value, may go on with it.
NEUTRAL_IN_STAGE = frozenset(("contrastive.packed",))
ABSENT = "<absent>"


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> dict[str, Any]:
    """Nested dicts and lists of dicts -> {"stages[0].optim.lr": 1e-05, ...}; other lists stay
    values (``betas``, ``train``)."""
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else key, out)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for i, item in enumerate(value):
            _flatten(item, f"{prefix}[{i}]", out)
    else:
        out[prefix] = value
    return out


def _neutral(key: str) -> bool:
    """``key`` (``"stages[1].contrastive.packed"``) names a setting that leaves the weights as
    they are: a NEUTRAL run setting, or a NEUTRAL_IN_STAGE one of any list of stages."""
    head, _, rest = key.partition(".")
    return head.split("[")[0] in NEUTRAL or (head.endswith("]") and rest in NEUTRAL_IN_STAGE)


def config_changes(saved: dict[str, Any], current: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """{dotted key: (saved value, current value)} for every result-shaping difference; a key
    missing on one side shows as ``"<absent>"``. A key the saved config lacks and the current one
    leaves unset (None) is no difference: an option added in a later version, at its default.
    Neutral settings (``NEUTRAL``, ``NEUTRAL_IN_STAGE``) are never a difference."""
    old = _flatten(json.loads(json.dumps(saved)), "", {})  # the same JSON types on both sides
    new = _flatten(json.loads(json.dumps(current)), "", {})
    changes = {}
    for key in sorted(set(old) | set(new), key=lambda k: (k.split(".")[0], k)):
        if _neutral(key):
            continue
        before, after = old.get(key, ABSENT), new.get(key, ABSENT)
        if before != after and not (before == ABSENT and after is None):
            changes[key] = (before, after)
    return changes


def describe_changes(changes: dict[str, tuple[Any, Any]]) -> str:
    return "; ".join(f"{key}: {json_text(a)} -> {json_text(b)}" for key, (a, b) in changes.items())


def open_run(
    config: TrainConfig, env: DistEnv, resume: bool, allow_config_change: bool
) -> dict[str, tuple[Any, Any]]:
    """Check the run directory against ``config`` and write ``train_config.json`` (rank 0).

    Raises ``FileExistsError`` when a run exists and ``resume`` is false, :class:`InputError`
    when resuming with a changed config without ``allow_config_change``. Returns the accepted
    changes (empty for a new run or the same config). Every rank must call it.
    """
    out = Path(config.output_dir)
    path = out / CONFIG_FILE
    stages = out / STAGES_DIR
    if not resume and stages.is_dir() and any(stages.iterdir()):
        raise FileExistsError(
            f"{out}: already holds a training run; resume it (--resume) or choose another output_dir"
        )
    changes = {}
    if resume and path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        changes = config_changes(saved, config.to_dict())
        if changes and not allow_config_change:
            raise InputError(
                path,
                f"the config differs from the one this run was started with: {describe_changes(changes)}. "
                "Resume with the original config, or pass --allow-config-change to continue with the "
                "new one (the change is logged and the old config kept)",
            )
    barrier()  # every rank has read the saved config before it is replaced
    if env.is_main:
        out.mkdir(parents=True, exist_ok=True)
        if changes:
            shutil.copy2(path, _next_previous(out))
        write_json_atomic(path, config.to_dict())
    barrier()
    return changes


def _next_previous(out: Path) -> Path:
    n = 1
    while (out / f"train_config.previous-{n}.json").exists():
        n += 1
    return out / f"train_config.previous-{n}.json"


def previous_configs(out: str | os.PathLike) -> list[Path]:
    """The configs a run followed before accepted changes, oldest first."""
    found = Path(out).glob("train_config.previous-*.json")
    return sorted(found, key=lambda p: int(p.stem.rsplit("-", 1)[1]))

"""MERT-v1-95M features as the official CLaMP 3 extractor computes them.

transformers' ``HubertModel`` holds MERT-v1-95M unchanged: same 211 tensor names and shapes
(parity README, "HubertModel can hold MERT-v1-95M as is"), so no model code is vendored. The
only renaming is the positional convolution's weight norm, stored as ``weight_g`` / ``weight_v``
in the released checkpoint and held as ``parametrizations.weight.original0`` / ``original1`` by
torch >= 2.1 modules; :func:`load_mert_state` accepts either spelling and is otherwise strict.

Per window the 13 hidden states (encoder input after its LayerNorm, then the 12 layer outputs)
are each averaged over time; the row is their mean (official ``--mean_features``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clamp3.audio.base import WindowFrontend
from clamp3.checkpoints import CheckpointError, load_torch_file
from clamp3.utils.device import parse_dtype, resolve_device
from clamp3.utils.meta import params_on_meta

HUB_NAME = "m-a-p/MERT-v1-95M"
HUB_URL = f"https://huggingface.co/{HUB_NAME}"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# config.json keys of the remote-code MERT class that HubertConfig must not see.
_REMOTE_CODE_KEYS = ("model_type", "auto_map", "architectures")
_LEGACY_WEIGHT_NORM = {
    ".weight_g": ".parametrizations.weight.original0",
    ".weight_v": ".parametrizations.weight.original1",
}


def build_mert_model(config: dict[str, Any]):
    """An uninitialised (meta-parameter) ``HubertModel`` for a MERT ``config.json`` dict."""
    from transformers import HubertConfig, HubertModel

    unsupported = {
        "feature_extractor_cqt": bool(config.get("feature_extractor_cqt", False)),
        "deepnorm": bool(config.get("deepnorm", False)),
        "attention_relax": float(config.get("attention_relax", -1.0)) > 0,
    }
    if any(unsupported.values()):
        names = ", ".join(k for k, v in unsupported.items() if v)
        raise CheckpointError(
            f"MERT config uses {names}, which HubertModel cannot hold (MERT-v1-95M does not)"
        )
    cfg = {k: v for k, v in config.items() if k not in _REMOTE_CODE_KEYS}
    with params_on_meta():
        model = HubertModel(HubertConfig(**cfg))
    return model.eval()


def _canonical(name: str) -> str:
    for legacy, current in _LEGACY_WEIGHT_NORM.items():
        if name.endswith(legacy):
            return name[: -len(legacy)] + current
    return name


def load_mert_state(
    model: torch.nn.Module, state: dict[str, torch.Tensor], origin: str = "checkpoint"
) -> None:
    """Load ``state`` into ``model`` strictly, accepting both weight-norm spellings.

    Raises :class:`CheckpointError` naming every missing, unexpected, duplicated or misshaped key.
    """
    expected = {_canonical(k): (k, v.shape) for k, v in model.state_dict().items()}
    renamed: dict[str, torch.Tensor] = {}
    problems: list[str] = []
    seen: dict[str, str] = {}
    for key, tensor in state.items():
        canon = _canonical(key)
        if canon in seen:
            problems.append(f"both {seen[canon]!r} and {key!r} hold {canon!r}")
            continue
        seen[canon] = key
        if canon not in expected:
            problems.append(f"unexpected key {key!r}")
            continue
        target, shape = expected[canon]
        if tuple(tensor.shape) != tuple(shape):
            problems.append(f"{key!r} has shape {tuple(tensor.shape)}, the model expects {tuple(shape)}")
            continue
        renamed[target] = tensor.to(torch.float32)
    problems += [f"missing key {target!r}" for canon, (target, _) in expected.items() if canon not in seen]
    if problems:
        raise CheckpointError(f"{origin}: not a MERT checkpoint for this config: " + "; ".join(problems))
    model.load_state_dict(renamed, strict=True, assign=True)


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors' own error for a truncated or empty file
            raise CheckpointError(f"{path}: unreadable safetensors file ({exc})") from exc
    state = load_torch_file(path)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state dict, found {type(state).__name__}")
    return state


def resolve_mert_files(name_or_dir: str | os.PathLike) -> tuple[Path, Path]:
    """(config.json, weights file) of a local folder in the hub layout or a hub repository id."""
    path = Path(name_or_dir)
    if path.is_dir():
        weights = [path / f for f in WEIGHT_FILES if (path / f).is_file()]
        if not (path / "config.json").is_file() or not weights:
            raise CheckpointError(
                f"{path}: a MERT folder needs config.json and one of {', '.join(WEIGHT_FILES)} "
                f"(the files of {HUB_URL})"
            )
        return path / "config.json", weights[0]
    return _from_hub(str(name_or_dir))


def _from_hub(repo: str) -> tuple[Path, Path]:
    from clamp3.hub import fetch

    instead = (
        "and put config.json and the weights in a folder, then pass that folder (or place it as "
        "`mert/` beside the CLaMP 3 weights)"
    )
    what = "MERT weights"
    # pytorch_model.bin first: the file the official MERT-v1-95M repository has always held.
    weights = WEIGHT_FILES[::-1]
    config = fetch(repo, "config.json", what=what, instead=instead, also=weights[:1])
    return config, fetch(repo, weights, what=what, instead=instead, also=("config.json",))


class MertExtractor(WindowFrontend):
    """MERT-v1-95M window features (official ``extract_mert.py --mean_features`` output).

    ``model`` is a MERT ``HubertModel``; it is moved to ``device``/``dtype`` in place (the
    extractor owns it). ``batch_size`` windows run per forward pass; by default 1 on CPU, where
    MERT already runs at the machine's matrix-product peak and larger batches only add memory
    traffic (benchmarks/audio_throughput.py: 1.07x vs 0.84x of the official loop), and 8 on a
    GPU, which batching fills. ``dtype`` float16/bfloat16 trades exactness for speed: on GPUs,
    and bfloat16 also on CPUs with native bf16 instructions (AVX512-BF16, AMX), where it is ~2x
    the fp32 speed at ~1e-2 absolute difference (cosine to fp32 rows > 0.9999; see
    benchmarks/audio_throughput.py). Time means are always accumulated in float32.
    """

    num_layers = 13

    def __init__(
        self,
        model: torch.nn.Module,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        batch_size: int | None = None,
    ):
        # None: the CPU, where a torch module starts (as Clamp3Model); "auto", the commands'
        # default: the GPU when there is one. A device this machine lacks is one line up front
        # (clamp3.utils.device), not torch's assertion at the first forward pass.
        self.device = torch.device(resolve_device(str(device)) if device is not None else "cpu")
        self.dtype = parse_dtype(dtype)
        self.model = model.eval().to(device=self.device, dtype=self.dtype)
        self.feature_dim = int(model.config.hidden_size)
        self.num_layers = int(model.config.num_hidden_layers) + 1
        self._default_batch = batch_size is None
        self.batch_size = batch_size or (1 if self.device.type == "cpu" else 8)

    @classmethod
    def from_pretrained(
        cls,
        name_or_dir: str | os.PathLike = HUB_NAME,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        batch_size: int | None = None,
    ) -> MertExtractor:
        """Load ``"m-a-p/MERT-v1-95M"`` through the hub cache, or a local folder holding
        ``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``."""
        config_path, weights_path = resolve_mert_files(name_or_dir)
        model = build_mert_model(json.loads(config_path.read_text(encoding="utf-8")))
        load_mert_state(model, _read_state(weights_path), origin=str(weights_path))
        return cls(model, device=device, dtype=dtype, batch_size=batch_size)

    def to(self, device: str | torch.device) -> MertExtractor:
        """Move MERT to ``device`` (its dtype stays); returns ``self``."""
        self.device = torch.device(device)
        self.model.to(device=self.device)
        if self._default_batch:  # the per-device default (class docstring) follows the device
            self.batch_size = 1 if self.device.type == "cpu" else 8
        return self

    def encode_windows(self, windows: np.ndarray) -> np.ndarray:
        """(B, L) float32 normalised windows -> (13, B, 768) float32 time-mean hidden states."""
        x = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))
        with torch.inference_mode():
            x = x.to(device=self.device, dtype=self.dtype)
            hidden = self.model(input_values=x, output_hidden_states=True).hidden_states
            # Reduce each state as soon as it is read: never more than one batch's states alive.
            rows = torch.stack([h.to(torch.float32).mean(dim=1) for h in hidden])
        return rows.cpu().numpy()

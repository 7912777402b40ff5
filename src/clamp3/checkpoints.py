"""Resolve a model name or path to a config and a lazy source of tensors.

Accepted forms, in the order they are tried:

1. a directory written by ``save_pretrained``: ``config.json`` + ``model.safetensors`` (read
   through a memory map, tensor by tensor, so unused towers are never read);
2. an official ``.pth`` / ``.bin`` file: CLaMP 3 (``symbolic_*`` names), CLaMP 2
   (``music_*``) or the M3 pre-training checkpoint (``encoder.*``), its ``model`` entry mapped to
   this package's names (which are the CLaMP 3 ones);
3. a tag (``saas``, ``c2``, ``clamp2``, ``m3``) resolved to the official file on the Hugging Face
   hub through huggingface_hub's cache.

Keys are checked strictly: a missing or unexpected tensor is an error that names it. The
only keys dropped on purpose are the BERT/XLM-R poolers, which the official model stores but
never uses.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from clamp3.config import Clamp3Config, load_preset
from clamp3.utils.errors import CheckpointError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

_CLAMP3_SUFFIX = (
    "h_size_768_t_model_FacebookAI_xlm-roberta-base_t_length_128_a_size_768_a_layers_12"
    "_a_length_128_s_size_768_s_layers_12_p_size_64_p_length_512.pth"
)
OFFICIAL_FILES: dict[str, tuple[str, str]] = {
    "saas": ("sander-wood/clamp3", f"weights_clamp3_saas_{_CLAMP3_SUFFIX}"),
    "c2": ("sander-wood/clamp3", f"weights_clamp3_c2_{_CLAMP3_SUFFIX}"),
    "clamp2": (
        "sander-wood/clamp2",
        "weights_clamp2_h_size_768_lr_5e-05_batch_128_scale_1_t_length_128_t_model_"
        "FacebookAI_xlm-roberta-base_t_dropout_True_m3_True.pth",
    ),
    "m3": (
        "sander-wood/clamp2",
        "weights_m3_p_size_64_p_length_512_t_layers_3_p_layers_12_h_size_768_lr_0.0001"
        "_batch_16_mask_0.45.pth",
    ),
}

# Stored by the official code, never used by it: the poolers of the three BERT/XLM-R encoders.
_UNUSED = re.compile(r"^(text_model|symbolic_model\.base|audio_model)\.pooler\.")


@dataclass
class WeightSource:
    """Where a model's tensors come from: ``names`` (this package's key names), ``shapes``
    (their shapes, known without reading any data) and ``get``, which reads one tensor on
    demand. ``origin`` says where it came from, for messages."""

    config: Clamp3Config
    names: frozenset[str]
    get: Callable[[str], torch.Tensor]
    origin: str
    directory: Path | None = None
    shapes: dict[str, tuple[int, ...]] | None = None


def resolve(source: str | os.PathLike, config: Clamp3Config | str | None = None) -> WeightSource:
    """Turn a directory, an official checkpoint file or a tag into a :class:`WeightSource`.

    ``config`` (a preset name or a config) overrides the architecture for official files whose
    sizes differ from the official presets (e.g. a fine-tuned tiny model in official format).
    """
    if isinstance(config, str):
        config = load_preset(config)
    path = Path(source)
    if path.is_dir():
        return _from_directory(path, config)
    if path.is_file():
        if path.name == WEIGHTS_NAME and (path.parent / CONFIG_NAME).is_file():
            return _from_directory(path.parent, config)  # the weights of a save_pretrained folder
        if path.suffix.lower() == ".safetensors":
            raise CheckpointError(
                f"{path}: a safetensors file without its {CONFIG_NAME} says no architecture; pass the "
                f"folder that save_pretrained or convert-checkpoint wrote ({CONFIG_NAME} + {WEIGHTS_NAME})"
            )
        return from_official_file(path, config)
    name = str(source)
    if name in OFFICIAL_FILES:
        return from_official_file(download_official(name), config, name=name)
    raise CheckpointError(
        f"{name}: not a model directory, a checkpoint file or a known tag ({', '.join(OFFICIAL_FILES)})"
    )


def download_official(tag: str) -> Path:
    """Path of the official weights for ``tag`` in the Hugging Face cache, downloading them
    when the hub is reachable (:func:`clamp3.hub.fetch`). Offline and not cached: a
    ``CheckpointError`` saying what to fetch, within seconds."""
    from clamp3.hub import fetch

    repo, filename = OFFICIAL_FILES[tag]
    return fetch(
        repo,
        filename,
        what=f"the {tag!r} weights",
        instead=f"and pass the file's path instead of {tag!r} (`clamp3 convert-checkpoint FILE DIR` "
        "turns it into a fast-loading directory)",
    )


def _from_directory(path: Path, config: Clamp3Config | None) -> WeightSource:
    from safetensors import safe_open

    cfg_file, weights = path / CONFIG_NAME, path / WEIGHTS_NAME
    if (path / "onnx.json").is_file() and not weights.is_file():
        raise CheckpointError(
            f"{path}: an ONNX export (export-onnx), not torch weights: load it with "
            "Clamp3Pipeline.from_pretrained or clamp3.onnx.OnnxModel"
        )
    for required in (cfg_file, weights):
        if not required.is_file():
            raise CheckpointError(f"{path}: missing {required.name} (expected a save_pretrained directory)")
    try:
        config = config or Clamp3Config.load(cfg_file)
    except (ValueError, TypeError, KeyError) as exc:  # not JSON, unknown fields, wrong types
        raise CheckpointError(f"{cfg_file}: not a clamp3 model config ({exc})") from exc
    try:
        handle = safe_open(str(weights), framework="pt")
    except Exception as exc:  # safetensors' own error for a truncated or empty file
        raise CheckpointError(f"{weights}: unreadable safetensors file ({exc})") from exc
    names = frozenset(handle.keys())
    shapes = {k: tuple(handle.get_slice(k).get_shape()) for k in names}  # header only, no data read
    return WeightSource(config, names, handle.get_tensor, str(weights), directory=path, shapes=shapes)


def load_torch_file(path: str | os.PathLike) -> object:
    """What a ``.pth``/``.bin`` holds, read weights-only (no code runs) and memory-mapped where
    the format allows; ``CheckpointError`` naming the file with a one-line reason otherwise."""
    try:
        return torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception:  # old (non-zip) serialisation cannot be memory-mapped
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            reason = _load_failure(exc)
            raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({reason})") from exc


def _load_failure(exc: BaseException) -> str:
    """torch's reason in one line, without its advice to load with ``weights_only=False``
    (which runs the file's code: never for a file that is not a plain checkpoint)."""
    if isinstance(exc, KeyError):  # the legacy unpickler reading a first byte it does not know
        return "neither a zip archive nor a pickle"
    text = str(exc)
    marker = "WeightsUnpickler error:"
    if marker in text:
        lines = [line.strip() for line in text.split(marker, 1)[1].splitlines() if line.strip()]
        return "weights-only loading refused it" + (f": {lines[0]}" if lines else "")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def load_official_state(path: Path) -> dict[str, torch.Tensor]:
    """The ``model`` dict of an official checkpoint (or a bare state dict), memory-mapped."""
    data = load_torch_file(path)
    state = data.get("model", data) if isinstance(data, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: no 'model' state dict of tensors in this checkpoint")
    return state


def detect_flavour(names: set[str] | frozenset[str], source: str | os.PathLike = "checkpoint") -> str:
    """``clamp3``, ``clamp2`` or ``m3`` from the key names of an official state dict
    (``CheckpointError`` naming ``source`` and one of its keys for any other)."""
    if any(k.startswith("symbolic_model.") for k in names):
        return "clamp3"
    if any(k.startswith("music_model.") for k in names):
        return "clamp2"
    if any(k.startswith("encoder.patch_embedding.") for k in names):
        return "m3"
    example = f"; it holds e.g. {min(names)!r}" if names else "; it holds no tensors"
    raise CheckpointError(
        f"{source}: not a CLaMP 3, CLaMP 2 or M3 checkpoint (no symbolic_model.*, music_model.* or "
        f"encoder.* keys{example})"
    )


def map_official_key(key: str, flavour: str) -> str | None:
    """Official key -> this package's key; ``None`` for tensors that are dropped on purpose."""
    if flavour == "clamp2":
        key = re.sub(r"^music_(model|proj)\.", r"symbolic_\1.", key)
    elif flavour == "m3":
        if key.startswith("decoder."):
            return None  # the pre-training decoder; only the encoder is a CLaMP tower
        key = re.sub(r"^encoder\.", "symbolic_model.", key)
    return None if _UNUSED.match(key) else key


def from_official_file(path: Path, config: Clamp3Config | None, name: str | None = None) -> WeightSource:
    state = load_official_state(path)
    flavour = detect_flavour(set(state), path)
    if config is None:
        if flavour == "clamp3":
            tag = name or ("c2" if "_c2_" in path.name else "saas")
        else:
            tag = flavour
        config = load_preset(tag)
    mapped: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        new = map_official_key(key, flavour)
        if new is not None:
            mapped[new] = tensor
    shapes = {k: tuple(v.shape) for k, v in mapped.items()}
    return WeightSource(config, frozenset(mapped), mapped.__getitem__, str(path), shapes=shapes)


def check_keys(expected: dict[str, torch.Size], source: WeightSource) -> None:
    """Strict key and shape check of ``source`` against a model's expected state dict, before
    any tensor is read: every missing, unexpected or misshaped key is named."""
    missing = sorted(set(expected) - source.names)
    unexpected = sorted(source.names - set(expected))
    shapes = source.shapes or {}
    misshaped = sorted(
        f"{k} {shapes[k]} (expected {tuple(expected[k])})"
        for k in source.names & set(expected)
        if k in shapes and tuple(shapes[k]) != tuple(expected[k])
    )
    problems = []
    if missing:
        problems.append(f"missing keys: {_shorten(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_shorten(unexpected)}")
    if misshaped:
        problems.append(f"wrong shapes: {_shorten(misshaped)}")
    if problems:
        raise CheckpointError(
            f"{source.origin}: does not match the {source.config.name!r} architecture; " + "; ".join(problems)
        )


def _shorten(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (and {len(keys) - limit} more)" if len(keys) > limit else "")

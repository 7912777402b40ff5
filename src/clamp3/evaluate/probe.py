"""A saved linear probe: standardisation + one linear layer over frozen global embeddings.

On disk a probe is a directory::

    probe.json          format, task (single-label | multi-label), labels, input_dim,
                        thresholds, training settings, metrics, history, data summary
    probe.safetensors   weight (C, D), bias (C,), mean (D,), scale (D,)   float32
    confusion.png       validation confusion matrix (single-label; written by the pipeline)

Inference is plain numpy in float32, so a probe gives bit-identical scores before saving and
after reloading. Training lives in :mod:`clamp3.evaluate.probe_train`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clamp3.utils.errors import InputError
from clamp3.utils.io import atomic_path, write_json_atomic

PROBE_CONFIG = "probe.json"
PROBE_WEIGHTS = "probe.safetensors"
PROBE_FORMAT = "clamp3-linear-probe"
PROBE_VERSION = 1


@dataclass
class LinearProbe:
    """Scores = standardise(x) @ weight.T + bias.

    ``weight`` (C, D), ``bias`` (C,), ``mean``/``scale`` (D,) are float32. Single-label probes
    turn logits into class probabilities with a softmax; multi-label probes use a sigmoid per
    label and ``thresholds`` (C,) to decide which labels apply.
    """

    labels: list[str]
    weight: np.ndarray
    bias: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    multi_label: bool = False
    thresholds: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    @property
    def input_dim(self) -> int:
        return int(self.weight.shape[1])

    @property
    def task(self) -> str:
        return "multi-label" if self.multi_label else "single-label"

    def _check(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"the probe expects embeddings of shape (N, {self.input_dim}), got {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("embeddings contain NaN or infinity")
        return x

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Embeddings (N, D) as stored (not normalised) -> float32 logits (N, C)."""
        z = (self._check(x) - self.mean) / self.scale
        return z @ self.weight.T + self.bias

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """(N, C) in [0, 1]: softmax over classes, or an independent sigmoid per label."""
        logits = self.logits(x).astype(np.float64)
        if self.multi_label:
            return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Single-label: int64 class indices (N,). Multi-label: bool (N, C) over ``thresholds``."""
        if self.multi_label:
            thresholds = self.thresholds if self.thresholds is not None else np.full(len(self.labels), 0.5)
            return self.probabilities(x) >= thresholds
        return np.argmax(self.logits(x), axis=1).astype(np.int64)

    def evaluate(self, x: np.ndarray, targets: np.ndarray) -> dict:
        """Metrics of this probe on (x, targets): int (N,) or multi-hot bool (N, C) targets."""
        from clamp3.evaluate.classmetrics import multi_label_metrics, single_label_metrics

        if self.multi_label:
            return multi_label_metrics(targets, self.probabilities(x), self.predict(x), self.labels)
        return single_label_metrics(targets, self.predict(x), self.labels, scores=self.logits(x))

    # ----------------------------------------------------------------------------- files
    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``probe.json`` + ``probe.safetensors`` into ``directory`` (atomically each)."""
        from safetensors.numpy import save_file

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {
            "weight": self.weight,
            "bias": self.bias,
            "mean": self.mean,
            "scale": self.scale,
        }
        tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}
        with atomic_path(out / PROBE_WEIGHTS) as tmp:
            save_file(tensors, str(tmp), metadata={"format": PROBE_FORMAT})
        config = {
            "format": PROBE_FORMAT,
            "version": PROBE_VERSION,
            "task": self.task,
            "labels": list(self.labels),
            "input_dim": self.input_dim,
            "thresholds": None if self.thresholds is None else [float(t) for t in self.thresholds],
            **self.info,
        }
        write_json_atomic(out / PROBE_CONFIG, config)
        return out

    @classmethod
    def load(cls, directory: str | os.PathLike) -> LinearProbe:
        """Read a probe directory written by :meth:`save`; ``InputError`` names what is wrong."""
        from safetensors.numpy import load_file

        root = Path(directory)
        config_path, weights_path = root / PROBE_CONFIG, root / PROBE_WEIGHTS
        for path in (config_path, weights_path):
            if not path.is_file():
                raise InputError(path, "missing; not a probe directory written by 'clamp3 probe train'")
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(config_path, f"unreadable probe config ({exc})") from exc
        if config.get("format") != PROBE_FORMAT or config.get("version", 0) > PROBE_VERSION:
            raise InputError(config_path, f"not a {PROBE_FORMAT} v{PROBE_VERSION} file")
        tensors = load_file(str(weights_path))
        labels = list(config["labels"])
        expected = {
            "weight": (len(labels), config["input_dim"]),
            "bias": (len(labels),),
            "mean": (config["input_dim"],),
            "scale": (config["input_dim"],),
        }
        for name, shape in expected.items():
            if name not in tensors or tuple(tensors[name].shape) != shape:
                got = tensors[name].shape if name in tensors else "missing"
                raise InputError(weights_path, f"tensor {name!r} should have shape {shape}, got {got}")
        thresholds = config.get("thresholds")
        reserved = {"format", "version", "task", "labels", "input_dim", "thresholds"}
        return cls(
            labels=labels,
            weight=tensors["weight"],
            bias=tensors["bias"],
            mean=tensors["mean"],
            scale=tensors["scale"],
            multi_label=config["task"] == "multi-label",
            thresholds=None if thresholds is None else np.asarray(thresholds, dtype=np.float32),
            info={k: v for k, v in config.items() if k not in reserved},
        )

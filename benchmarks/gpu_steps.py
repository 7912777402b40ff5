"""The measurements of ``gpu_check.py``, one function per step (see that file for the contract).

Every step takes a :class:`Check` and returns a JSON-ready dict. Steps use only the library's
public entry points (``Clamp3Model.from_pretrained`` / ``embed_*`` / ``get_features``, the MERT
extractor, the training task, the ``clamp3`` CLI), so the check measures what users run.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clamp3.preprocess.patches import PATCH_SIZE

MODALITIES = ("text", "symbolic", "audio")
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class Check:
    """What every step shares: where it runs, at which size, and the models built so far."""

    device: torch.device
    smoke: bool
    parity_dir: Path
    workdir: Path
    scale: int = 1
    models: dict[str, Any] = field(default_factory=dict)  # "float32"/"bfloat16"/... -> Clamp3Model
    checkpoint: Path | None = None

    @property
    def preset(self) -> str:
        return "tiny" if self.smoke else "saas"


# ----------------------------------------------------------------------------- timing
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, reps: int = 1) -> float:
    """Best wall time of ``reps`` calls (seconds), after one warm-up call."""
    fn()
    sync(device)
    best = math.inf
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def gemm_peak(device: torch.device, dtype: torch.dtype, smoke: bool) -> float:
    """Measured GEMM rate (FLOP/s) for square products of ``dtype`` on ``device``."""
    n = 512 if smoke else 8192
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    reps = 3 if smoke else 20

    def run() -> None:
        for _ in range(reps):
            torch.mm(a, b)

    return reps * 2 * n**3 / timed(run, device, reps=3)


# ----------------------------------------------------------------------------- model
def build_model(check: Check):
    """fp32 model on the device: deterministic parity weights (full) or the seeded tiny preset."""
    from clamp3 import Clamp3Model

    if check.smoke:
        return Clamp3Model.from_preset("tiny", seed=0).eval().to(check.device)
    from clamp3.testing import deterministic_state_dict, read_key_list, write_official_checkpoint

    state = deterministic_state_dict(read_key_list(check.parity_dir / "keys" / "clamp3_model.json"))
    check.checkpoint = write_official_checkpoint(check.workdir / "weights_clamp3_saas_parity.pth", state)
    del state
    return Clamp3Model.from_pretrained(check.checkpoint, modalities=None, device=check.device)


def embed(model, modality: str, items: list[np.ndarray], **kwargs) -> list[np.ndarray]:
    """The library's batched path for one modality (items as the ``embed_*`` methods take them)."""
    if modality == "text":
        return model.embed_text_ids([i.tolist() for i in items], **kwargs)
    if modality == "symbolic":
        return model.embed_patches(items, **kwargs)
    return model.embed_audio_features(items, **kwargs)


def parity_items(check: Check) -> dict[str, tuple[list[str], list[np.ndarray], list[np.ndarray] | None]]:
    """Per modality: names, inputs and the official expected global vectors (None in smoke mode,
    where the reference is the same model run one item at a time on the CPU)."""
    out = {}
    if check.smoke:
        work = workload(check.models["float32"].config, np.random.default_rng(3), 1, smoke=True)
        return {m: ([f"{m}_{i}" for i in range(len(v))], v, None) for m, v in work.items()}
    entries = json.loads((check.parity_dir / "model" / "manifest.json").read_text())
    for modality in MODALITIES:
        group = [e for e in entries if e["modality"] == modality]
        items = []
        for e in group:
            if modality == "text":
                items.append(np.asarray(json.loads((check.parity_dir / e["input"]).read_text())))
            elif modality == "symbolic":
                items.append(np.load(check.parity_dir / e["patches"]))
            else:
                items.append(np.load(check.parity_dir / e["input"])[0])
        expected = [np.load(check.parity_dir / e["expected_global"])[0] for e in group]
        out[modality] = ([e["name"] for e in group], items, expected)
    return out


def step_parity(check: Check) -> dict:
    """fp32 on the device vs the official vectors (<= 1e-4); fp16/bf16 finite, cosine >= 0.999."""
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 parity means fp32 products
    model = check.models["float32"] = build_model(check)
    result: dict[str, Any] = {"fp32": {}, "half": {}}
    cases = parity_items(check)
    fp32 = {}
    for modality, (names, items, expected) in cases.items():
        got = embed(model, modality, items)
        if expected is None:  # smoke: the CPU, one item at a time, is the reference
            cpu = copy.deepcopy(model).to("cpu")
            expected = [embed(cpu, modality, [x])[0] for x in items]
        diffs = [float(np.abs(g - e).max()) for g, e in zip(got, expected, strict=True)]
        fp32[modality] = got
        result["fp32"][modality] = {
            "n": len(names),
            "max_abs_diff": max(diffs),
            "ok": all(np.allclose(g, e, atol=1e-4, rtol=1e-4) for g, e in zip(got, expected, strict=True)),
        }
    for name, dtype in DTYPES.items():
        half = check.models[name] = copy.deepcopy(model).to(dtype)
        rows = {}
        for modality, (_, items, _) in cases.items():
            got = embed(half, modality, items)
            cos = [cosine(g, e) for g, e in zip(got, fp32[modality], strict=True)]
            finite = all(bool(np.isfinite(g).all()) for g in got)
            rows[modality] = {"finite": finite, "min_cosine": min(cos), "ok": finite and min(cos) >= 0.999}
        result["half"][name] = rows
    result["ok"] = all(r["ok"] for r in result["fp32"].values()) and all(
        r["ok"] for rows in result["half"].values() for r in rows.values()
    )
    return result


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-30))


# ----------------------------------------------------------------------------- throughput
def workload(config, rng: np.random.Generator, scale: int, smoke: bool) -> dict[str, list[np.ndarray]]:
    """Collection-shaped inputs: text queries of 8-39 tokens, scores of 16-1,059 patches
    (log-normal around lead-sheet length), recordings of 6-60 MERT windows; ``scale`` times
    48 / 48 / 16 items (the smoke mode shrinks lengths to the tiny preset's segments)."""
    text, sym, audio = config.tower("text"), config.tower("symbolic"), config.tower("audio")
    n_text, n_sym, n_audio = (8, 8, 4) if smoke else (48 * scale, 48 * scale, 16 * scale)
    lo_t, hi_t = (3, 40) if smoke else (8, 39)
    lo_s, hi_s = (3, 40) if smoke else (16, 1059)
    lo_a, hi_a = (1, 20) if smoke else (6, 60)
    texts = []
    for n in rng.integers(lo_t, hi_t + 1, n_text):
        body = rng.integers(5, text.vocab_size, n - 2)
        texts.append(np.concatenate([[0], body, [2]]).astype(np.int64))
    lengths = np.clip(np.exp(rng.normal(math.log(180), 0.9, n_sym)), lo_s, hi_s).astype(int)
    scores = [rng.integers(0, sym.num_classes, (n, PATCH_SIZE)).astype(np.int64) for n in lengths]
    recordings = [
        rng.standard_normal((n, audio.feature_dim)).astype(np.float32)
        for n in rng.integers(lo_a, hi_a + 1, n_audio)
    ]
    return {"text": texts, "symbolic": scores, "audio": recordings}


def real_lengths(modality: str, items: list[np.ndarray]) -> list[int]:
    """Positions the tower sees per item (audio: the two zero rows the library adds)."""
    return [len(x) + (2 if modality == "audio" else 0) for x in items]


def forward_flops(config, modality: str, items: list[np.ndarray]) -> float:
    """Forward FLOPs of the real segments: dense layers, attention scores/values, projection."""
    from clamp3.segments import segment_item

    cfg = config.tower(modality)
    h, layers, ffn = cfg.encoder.hidden_size, cfg.encoder.num_layers, cfg.encoder.intermediate_size
    per_token = layers * 2 * (4 * h * h + 2 * h * ffn) + (2 * 64 * h if modality == "symbolic" else 0)
    total = 0.0
    for n in real_lengths(modality, items):
        for s in segment_item(n, cfg.segment_length):
            total += (
                s.length * per_token + layers * 4 * s.length * s.length * h + 2 * h * config.projection_dim
            )
    return total


def official_path(model, modality: str, items: list[np.ndarray]) -> None:
    """One item at a time, every segment padded to the full segment length (official extractor)."""
    from clamp3.inputs import add_boundary_rows
    from clamp3.segments import segment_item

    cfg = model.config.tower(modality)
    length, device = cfg.segment_length, next(model.parameters()).device
    with torch.inference_mode():
        for x in items:
            x = add_boundary_rows(x) if modality == "audio" else x
            for s in segment_item(len(x), length):
                shape = (1, length) + tuple(x.shape[1:])
                seg = torch.zeros(shape, dtype=torch.long if modality != "audio" else torch.float32)
                seg[0, : s.length] = torch.as_tensor(x[s.start : s.end])
                mask = torch.zeros(1, length, dtype=torch.long)
                mask[0, : s.length] = 1
                model.get_features(modality, seg.to(device), mask.to(device)).cpu()


def step_throughput(check: Check) -> dict:
    """Items/s and real tokens/s per tower: official path vs the library (fp32, bf16), and the
    achieved FLOP rate as a share of the measured fp32 / bf16 GEMM peak."""
    model = check.models["float32"]
    peaks = {
        name: gemm_peak(check.device, dt, check.smoke)
        for name, dt in (("float32", torch.float32), ("bfloat16", torch.bfloat16))
    }
    work = workload(model.config, np.random.default_rng(0), check.scale, check.smoke)
    result: dict[str, Any] = {"gemm_peak_tflops": {k: v / 1e12 for k, v in peaks.items()}, "towers": {}}
    for modality, items in work.items():
        tokens, flops = sum(real_lengths(modality, items)), forward_flops(model.config, modality, items)
        rows = {"official_fp32": timed(lambda m=modality, i=items: official_path(model, m, i), check.device)}
        for dtype in ("float32", "bfloat16"):
            for size in (8, 32, 128) if check.smoke else (32, 128, 512):
                m = check.models[dtype]
                rows[f"library_{dtype}_batch{size}"] = timed(
                    lambda m=m, mod=modality, i=items, b=size: embed(m, mod, i, batch_size=b), check.device
                )
        table = {}
        for name, seconds in rows.items():
            peak = peaks["bfloat16" if "bfloat16" in name else "float32"]
            table[name] = {
                "seconds": seconds,
                "items_per_s": len(items) / seconds,
                "tokens_per_s": tokens / seconds,
                "share_of_peak": flops / seconds / peak,
            }
        best = min((n for n in table if n.startswith("library_float32")), key=lambda n: table[n]["seconds"])
        result["towers"][modality] = {
            "items": len(items),
            "real_tokens": tokens,
            "gflop": flops / 1e9,
            "paths": table,
            "best_fp32": best,
            "best_bf16": min((n for n in table if "bfloat16" in n), key=lambda n: table[n]["seconds"]),
            "speedup_best_fp32_vs_official": table["official_fp32"]["seconds"] / table[best]["seconds"],
        }
    result["ok"] = all(math.isfinite(r["speedup_best_fp32_vs_official"]) for r in result["towers"].values())
    return result

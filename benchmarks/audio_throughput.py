"""MERT feature extraction: throughput of the batched path vs the official loop, and peak memory.

Measured side by side in one run, with full-size MERT-v1-95M and the deterministic weights
(``clamp3.testing.deterministic_tensor``; real weights would time the same):

1. the official path, as ``extract_mert.py`` runs it: per file, decode the whole file, mix,
   resample, normalise the whole array, then one MERT forward per window, eager attention;
2. this package: ``MertExtractor.features_from_files`` -- streamed decoding, windows of all files
   batched by length (no padding), SDPA attention;
3. the same code with ``batch_size=1`` (separates the effect of batching from the rest);
4. ``dtype="bfloat16"`` on the CPU (only where the CPU has native bf16 instructions, e.g.
   AVX512-BF16 or AMX): faster, but NOT identical -- its deviation is printed, not checked.

Rows of 1-3 must agree (checked, atol 1e-4). The run also prints a lower bound for fp32: the
FLOPs of every window (counted from the architecture, see :func:`window_flops`) divided by the
machine's measured fp32 matrix-product rate -- no fp32 implementation can beat it, so it caps the
speed-up any exact method can show over the official loop on this machine. Methods alternate within each repetition and the
best repetition of each is reported, which limits the effect of other jobs on a shared machine.

Peak memory is measured in fresh subprocesses (peak RSS: ``VmHWM``): (a) decoding a long
stereo 44.1 kHz file whole (the official loader) vs streamed (``load_audio``), without a model;
(b) ``features_from_file`` on a long file with the model loaded.

Usage: python benchmarks/audio_throughput.py [--files 4] [--seconds 12.3] [--batch-size 4]
       [--reps 2] [--threads 2] [--no-bf16] [--decode-seconds 1200] [--long-seconds 600] [--skip-memory]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from clamp3.audio import MertExtractor, load_audio
from clamp3.audio.mert import build_mert_model, load_mert_state
from clamp3.audio.resample import resample
from clamp3.audio.windows import prepare_track
from clamp3.testing import deterministic_tensor

# MERT-v1-95M's config.json (the keys HubertModel reads).
MERT_V1_95M = {
    "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
    "hidden_act": "gelu", "conv_dim": [512] * 7, "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
    "conv_stride": [5, 2, 2, 2, 2, 2, 2], "conv_bias": False, "feat_extract_norm": "group",
    "feat_extract_activation": "gelu", "feat_proj_layer_norm": True, "do_stable_layer_norm": False,
    "num_conv_pos_embeddings": 128, "num_conv_pos_embedding_groups": 16, "layer_norm_eps": 1e-5,
    "mask_time_prob": 0.05, "vocab_size": 32,
}  # fmt: skip
RATES = (44100, 48000, 22050, 16000)


def mert_model(attention: str = "sdpa") -> torch.nn.Module:
    """Full-size MERT-v1-95M with the recipe weights, keyed by the checkpoint's tensor names."""
    model = build_mert_model(dict(MERT_V1_95M, attn_implementation=attention))
    state = {}
    for key, value in model.state_dict().items():
        name = key.replace("parametrizations.weight.original0", "weight_g")
        name = name.replace("parametrizations.weight.original1", "weight_v")
        state[name] = torch.from_numpy(deterministic_tensor(name, value.shape))
    load_mert_state(model, state)
    return model.eval()


def synth(path: Path, seconds: float, sr: int, channels: int = 2, seed: int = 0) -> Path:
    """A sum of sines plus a little noise, 16-bit PCM WAV, written in one-minute blocks."""
    rng = np.random.default_rng(seed)
    with sf.SoundFile(path, "w", sr, channels, subtype="PCM_16") as handle:
        n, block = int(seconds * sr), 60 * sr
        for start in range(0, n, block):
            t = np.arange(start, min(n, start + block))[:, None] / sr
            f0 = 220.0 * 1.5 ** np.arange(channels)
            x = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.1 * np.sin(2 * np.pi * 3.01 * f0 * t + 1.1)
            handle.write((x + 0.02 * rng.standard_normal(x.shape)).astype(np.float32))
    return path


# ----------------------------------------------------------------------------- the official path
def official_load(path: Path) -> np.ndarray:
    """Whole-file decode, channel mean, whole-array resampling (what torchaudio.load + Resample do)."""
    data, sr = sf.read(path, dtype="float32", always_2d=True)
    return resample(data.mean(axis=1, dtype=np.float32), sr, 24000)


def official_features(model: torch.nn.Module, path: Path) -> np.ndarray:
    """The official loop: one forward per window, 13 time means, layer mean -> (n, 768)."""
    track = prepare_track(official_load(path), str(path))
    normalised = (track.wave - track.mean) / track.std
    rows = []
    with torch.no_grad():
        for start, stop in track.bounds:
            hidden = model(
                torch.from_numpy(normalised[start:stop])[None], output_hidden_states=True
            ).hidden_states
            rows.append(torch.stack([h.mean(dim=1) for h in hidden]))
    return torch.cat(rows, dim=1).mean(dim=0).numpy()


# ----------------------------------------------------------------------------- fp32 lower bound
def window_flops(samples: int, cfg: dict = MERT_V1_95M) -> float:
    """Floating-point operations (2 per multiply-add) of one MERT forward over ``samples``.

    Counts the convolutional feature encoder, the feature projection, the positional
    convolution, and per layer the Q/K/V/O and feed-forward products plus the two attention
    products (T x T x D each). Norms, GELU and softmax are left out (memory-bound, a few %).
    """
    macs, frames, channels = 0.0, samples, 1
    for width, kernel, stride in zip(cfg["conv_dim"], cfg["conv_kernel"], cfg["conv_stride"]):
        frames = (frames - kernel) // stride + 1
        macs += frames * width * channels * kernel
        channels = width
    d, ff = cfg["hidden_size"], cfg["intermediate_size"]
    groups, pos_kernel = cfg["num_conv_pos_embedding_groups"], cfg["num_conv_pos_embeddings"]
    macs += frames * channels * d + frames * d * (d // groups) * pos_kernel
    macs += cfg["num_hidden_layers"] * (frames * (4 * d * d + 2 * d * ff) + 2 * frames * frames * d)
    return 2.0 * macs


def gemm_rate(size: int = 2048, reps: int = 5) -> float:
    """Best measured fp32 matrix-product rate in FLOP/s (square ``size`` GEMMs)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(reps))
    return 2.0 * size**3 / best


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ----------------------------------------------------------------------------- throughput
def throughput(args: argparse.Namespace, folder: Path) -> None:
    paths = [
        synth(folder / f"f{i}.wav", args.seconds, RATES[i % len(RATES)], seed=i) for i in range(args.files)
    ]
    audio_seconds = args.files * args.seconds
    bounds = [b for p in paths for b in prepare_track(load_audio(p)).bounds]
    windows = len(bounds)
    print(f"{args.files} files x {args.seconds} s = {audio_seconds:.1f} s of audio, {windows} windows; "
          f"torch threads {torch.get_num_threads()}")  # fmt: skip
    official = mert_model("eager")
    batched = MertExtractor(mert_model("sdpa"), batch_size=args.batch_size)
    single = MertExtractor(batched.model, batch_size=1)
    methods = {
        "official loop (1 window/forward, eager)": lambda: [official_features(official, p) for p in paths],
        f"clamp3 batched (batch_size={args.batch_size})": lambda: [
            r.features for r in batched.features_from_files(paths)
        ],
        "clamp3 batch_size=1": lambda: [r.features for r in single.features_from_files(paths)],
    }
    if args.bf16:
        bf16 = MertExtractor(mert_model("sdpa"), dtype="bfloat16", batch_size=1)
        methods["clamp3 bfloat16 (not identical)"] = lambda: [
            r.features for r in bf16.features_from_files(paths)
        ]
    # Warm-up (oneDNN primitives, allocator) so that neither method pays it in the timings.
    official_features(official, paths[0])
    batched.features_from_file(paths[0])
    best = {name: float("inf") for name in methods}
    outputs = {}
    for _ in range(args.reps):
        for name, run in methods.items():
            start = time.perf_counter()
            outputs[name] = run()
            best[name] = min(best[name], time.perf_counter() - start)
    reference = outputs[next(iter(methods))]
    for name, rows in outputs.items():
        diff = max(float(np.abs(a - b).max()) for a, b in zip(rows, reference))
        assert diff < 1e-4 or "not identical" in name, f"{name} differs from the official loop by {diff}"
        outputs[name] = diff
    base = best[next(iter(methods))]
    print(f"{'method':46s} {'wall s':>8s} {'audio s / s':>12s} {'speed-up':>9s} {'max |diff|':>11s}")
    for name in methods:
        print(f"{name:46s} {best[name]:8.2f} {audio_seconds / best[name]:12.2f} "
              f"{base / best[name]:8.2f}x {outputs[name]:11.1e}")  # fmt: skip
    flops = sum(window_flops(stop - start) for start, stop in bounds)
    rate = gemm_rate()
    bound = flops / rate
    print(f"{'fp32 lower bound (FLOPs / GEMM rate)':46s} {bound:8.2f} {audio_seconds / bound:12.2f} "
          f"{base / bound:8.2f}x {'':>11s}")  # fmt: skip
    print(f"  {flops / 1e9:.0f} GFLOP for {windows} windows at the measured {rate / 1e9:.0f} GFLOP/s: "
          f"no exact fp32 method can be more than {base / bound:.2f}x the official loop here")  # fmt: skip


# ----------------------------------------------------------------------------- memory (children)
def _hwm_mb() -> float:
    """Peak resident memory of this process in MB (VmHWM; unlike ru_maxrss it is reset by exec,
    so a child does not inherit its parent's peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def child_decode(path: str, mode: str) -> dict:
    before = _hwm_mb()
    start = time.perf_counter()
    wave = official_load(Path(path)) if mode == "whole" else load_audio(path)
    return {
        "seconds": time.perf_counter() - start,
        "samples": len(wave),
        "baseline_mb": before,
        "peak_mb": _hwm_mb(),
    }


def child_extract(path: str, batch_size: int) -> dict:
    extractor = MertExtractor(mert_model("sdpa"), batch_size=batch_size)
    extractor.features_from_waveform(np.sin(np.arange(120000) * 0.01).astype(np.float32))  # warm
    loaded = _hwm_mb()
    start = time.perf_counter()
    rows = extractor.features_from_file(path)
    return {
        "seconds": time.perf_counter() - start,
        "windows": rows.shape[0],
        "model_loaded_mb": loaded,
        "peak_mb": _hwm_mb(),
    }


def run_child(*argv: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *argv], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def memory(args: argparse.Namespace, folder: Path) -> None:
    long_wav = synth(folder / "decode.wav", args.decode_seconds, 44100, seed=7)
    print(f"\ndecode + resample a {args.decode_seconds / 60:.0f}-min stereo 44.1 kHz WAV "
          f"({long_wav.stat().st_size / 2**20:.0f} MiB), peak RSS of a fresh process:")  # fmt: skip
    results = {mode: run_child("--child-decode", str(long_wav), mode) for mode in ("whole", "stream")}
    for mode, r in results.items():
        label = "official (whole file)" if mode == "whole" else "clamp3 load_audio (streamed)"
        print(f"  {label:30s} peak {r['peak_mb']:7.0f} MB (imports {r['baseline_mb']:.0f} MB), "
              f"{r['seconds']:.1f} s, 24 kHz result {r['samples'] * 4 / 2**20:.0f} MB")  # fmt: skip
    print(f"  ratio whole/streamed peak above imports: "
          f"{(results['whole']['peak_mb'] - results['whole']['baseline_mb']) / max(1.0, results['stream']['peak_mb'] - results['stream']['baseline_mb']):.2f}x")  # fmt: skip
    long_wav.unlink()
    if args.long_seconds <= 0:
        return
    print(f"\nfeatures_from_file, batch_size={args.batch_size}, with the model loaded:")
    for seconds in sorted({min(60.0, args.long_seconds), args.long_seconds}):
        path = synth(folder / f"long{int(seconds)}.wav", seconds, 44100, seed=3)
        r = run_child("--child-extract", str(path), str(args.batch_size))
        print(f"  {seconds / 60:5.1f} min ({r['windows']:4d} windows): peak {r['peak_mb']:6.0f} MB, "
              f"model loaded {r['model_loaded_mb']:6.0f} MB, growth {r['peak_mb'] - r['model_loaded_mb']:5.0f} MB, "
              f"{seconds / r['seconds']:.2f} audio s / s")  # fmt: skip
        path.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=12.3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--decode-seconds", type=float, default=1200.0)
    parser.add_argument("--long-seconds", type=float, default=600.0)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time bfloat16 on the CPU (default on; off where the CPU lacks bf16)",
    )
    parser.add_argument("--child-decode", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--child-extract", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child_decode:
        print(json.dumps(child_decode(*args.child_decode)))
        return
    if args.child_extract:
        print(json.dumps(child_extract(args.child_extract[0], int(args.child_extract[1]))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        throughput(args, Path(tmp))
        if not args.skip_memory:
            memory(args, Path(tmp))


if __name__ == "__main__":
    main()

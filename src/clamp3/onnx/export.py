"""``export_onnx``: a loaded CLaMP 3 model -> a directory of verified ONNX tower graphs.

Exporter: ``torch.onnx.export(..., dynamo=True)`` (torch.export + onnxscript), opset 18, with
dynamic batch and length. The TorchScript exporter (``dynamo=False``) was tried on transformers
5's BERT/XLM-R and is not used: it traces the mask preparation's Python branches for the example
shape and gave differences of 0.1-0.2 at other lengths. Every graph is run with ONNX Runtime on
fixed inputs and compared with the torch model before it is kept: fp32 within 1e-4 (embedding)
and 2e-4 (hidden states), int8 and fp16 finite with cosine >= 0.99 per embedding. A failed
check raises :class:`ExportMismatch` and leaves nothing at the destination (everything is
written to a temporary folder beside it and renamed into place at the end).
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from clamp3.model import Clamp3Model
from clamp3.onnx.graphs import (
    TowerGraph,
    boolean_attention,
    sample_batch,
    torch_outputs,
    verification_batches,
)
from clamp3.onnx.layout import (
    INPUT_NAMES,
    OPSET,
    OUTPUT_NAMES,
    PRECISIONS,
    Manifest,
    TowerEntry,
    file_record,
    text_digest,
    write_manifest,
)
from clamp3.onnx.session import TowerSession
from clamp3.utils.errors import CheckpointError
from clamp3.utils.vectors import l2_normalize

# This module does not import clamp3.pipeline (which loads exports through clamp3.backends):
# a pipeline passed in is used through its attributes, the tokenizer and MERT are loaded as the
# pipeline loads them (clamp3.tokenizer, clamp3.audio).

# Every graph keeps its weights in ``<graph>.data`` (ONNX external data), never inside the
# protobuf: ONNX Runtime then memory-maps them instead of reading and copying them, and rows of
# the 250k x 768 token table that no query uses are never read. Measured on the full-size text
# tower: session peak RSS 1.90 GB -> 0.40 GB (fp32), 0.52 GB -> 0.15 GB (int8).
FP32_TOLERANCE = {"embedding": 1e-4, "hidden_states": 2e-4}  # absolute, plus the same relative
MIN_COSINE = 0.99  # int8 / fp16 against torch fp32, per embedding


class ExportMismatch(CheckpointError):
    """An exported graph that does not reproduce the torch model on the fixed inputs."""


def exporter_name() -> str:
    return f"torch.onnx.export(dynamo=True), torch {torch.__version__}"


def _export_graph(model: Clamp3Model, modality: str, path: Path) -> None:
    """The fp32 graph of one tower, dynamic in batch and length, weights in ``<path>.data``."""
    graph = TowerGraph(model, modality).eval()
    length = model.config.tower(modality).segment_length
    # An example length of its own (not the segment length, not 1 or 2) so no size is specialised.
    inputs, mask = sample_batch(model, modality, [max(3, length // 2 + 1)] * 3, seed=2)
    dims = {0: torch.export.Dim.DYNAMIC, 1: torch.export.Dim.DYNAMIC}
    with boolean_attention(graph.tower), torch.no_grad(), _quiet():
        program = torch.onnx.export(
            graph,
            (torch.from_numpy(inputs), torch.from_numpy(mask)),
            input_names=list(INPUT_NAMES[modality]),
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes={"inputs": dims, "attention_mask": dims},
            opset_version=OPSET,
            dynamo=True,
            verbose=False,
        )
        program.save(str(path), external_data=True)
    del program
    gc.collect()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter prints progress lines, logs that torchvision is absent and warns about
    transformers internals; ``export-onnx`` reports what matters itself (the check results)."""
    import io
    import logging
    import warnings

    loggers = [logging.getLogger(name) for name in ("", "torch.onnx", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def check_graph(model: Clamp3Model, modality: str, path: Path, precision: str) -> dict[str, float]:
    """Run ``path`` with ONNX Runtime on the fixed inputs and compare with torch.

    Returns the measured agreement (``max_abs_diff``, ``min_cosine``); raises
    :class:`ExportMismatch` naming the file when it is outside the tolerance of ``precision``.
    """
    session = TowerSession(path, modality, threads=None)
    worst, min_cos = 0.0, 1.0
    for inputs, mask in verification_batches(model, modality):
        ref_emb, ref_hidden = torch_outputs(model, modality, inputs, mask)
        emb, hidden = session.run(inputs, mask, hidden=True)
        if not (np.isfinite(emb).all() and np.isfinite(hidden[mask]).all()):
            raise ExportMismatch(f"{path}: the {precision} {modality} graph gives NaN or infinite values")
        cos = (l2_normalize(emb, np.float64) * l2_normalize(ref_emb, np.float64)).sum(1)
        min_cos = min(min_cos, float(cos.min()))
        for name, got, ref in (
            ("embedding", emb, ref_emb),
            ("hidden_states", hidden[mask], ref_hidden[mask]),
        ):
            diff = np.abs(got - ref)
            worst = max(worst, float(diff.max()))
            if precision == "fp32":
                tol = FP32_TOLERANCE[name]
                if (diff > tol + tol * np.abs(ref)).any():
                    raise ExportMismatch(
                        f"{path}: the {modality} graph disagrees with torch: {name} differs by up to "
                        f"{float(diff.max()):.3g} (tolerance {tol:g} + {tol:g} x |value|)"
                    )
    if precision != "fp32" and min_cos < MIN_COSINE:
        raise ExportMismatch(
            f"{path}: the {precision} {modality} graph is too far from torch: cosine {min_cos:.4f} < {MIN_COSINE}"
        )
    return {"max_abs_diff": worst, "min_cosine": min_cos}


def export_mert(model: Clamp3Model, frontend: object, staging: Path) -> TowerEntry:
    """The MERT front-end (``frontend``, else the model's own: ``<model dir>/mert`` or the hub
    cache) as ``mert.onnx`` (fp32, dynamic batch and length), checked against the torch
    extractor on fixed windows within 1e-4 + 1e-4 x |value|."""
    from clamp3.audio import load_frontend
    from clamp3.audio.mert import MertExtractor
    from clamp3.onnx.graphs import MertGraph, mert_windows

    if frontend is None:
        frontend = load_frontend(model.config.tower("audio"), model.asset_directory)
    if not isinstance(frontend, MertExtractor):
        raise CheckpointError(
            f"this model's audio front-end is {type(frontend).__name__}, not MERT: no mert graph"
        )
    graph = MertGraph(frontend.model).eval()
    path = staging / "mert.onnx"
    example = torch.from_numpy(np.random.default_rng(3).standard_normal((2, 36_000)).astype(np.float32))
    dims = {0: torch.export.Dim.DYNAMIC, 1: torch.export.Dim.DYNAMIC}
    with torch.no_grad(), _quiet():
        program = torch.onnx.export(
            graph, (example,), input_names=["windows"], output_names=["layer_means"],
            dynamic_shapes={"windows": dims}, opset_version=OPSET, dynamo=True, verbose=False,
        )  # fmt: skip
        program.save(str(path), external_data=True)
    del program
    session = TowerSession(path, "mert")
    worst = 0.0
    for windows in mert_windows():
        want, got = frontend.encode_windows(windows), session.run_mert(windows)
        diff = np.abs(got - want)
        worst = max(worst, float(diff.max()))
        if not np.isfinite(got).all() or (diff > 1e-4 + 1e-4 * np.abs(want)).any():
            raise ExportMismatch(
                f"{path}: the MERT graph disagrees with torch by up to {float(diff.max()):.3g}"
            )
    return _entry(path, {"max_abs_diff": worst, "min_cosine": 1.0})


def export_tower(model: Clamp3Model, modality: str, staging: Path, precision: str) -> TowerEntry:
    """Export, convert and check one tower into ``staging``; returns its manifest entry."""
    model.require(modality)
    final = staging / f"{modality}.onnx"
    fp32 = final if precision == "fp32" else staging / "fp32" / f"{modality}.onnx"
    fp32.parent.mkdir(exist_ok=True)
    _export_graph(model, modality, fp32)
    entry = _entry(final, check_graph(model, modality, fp32, "fp32"))
    if precision != "fp32":
        entry = derive_tower(model, modality, fp32, final, precision, entry.check)
        shutil.rmtree(fp32.parent)
    return entry


def derive_tower(
    model: Clamp3Model, modality: str, fp32: Path, final: Path, precision: str, fp32_check: dict
) -> TowerEntry:
    """The int8 or fp16 graph of a checked fp32 graph, itself checked against torch."""
    from clamp3.onnx.quantize import convert_fp16, quantize_int8

    model.require(modality)
    with _quiet():  # onnxruntime's quantiser logs advice on the root logger
        (quantize_int8 if precision == "int8" else convert_fp16)(fp32, final)
    check = check_graph(model, modality, final, precision)
    return _entry(final, {**check, "fp32_max_abs_diff": fp32_check["max_abs_diff"]})


def _entry(graph: Path, check: dict[str, float]) -> TowerEntry:
    files = sorted(p for p in graph.parent.iterdir() if p.is_file() and p.name.startswith(graph.name))
    return TowerEntry(graph.name, {p.name: file_record(p) for p in files}, check)


def export_onnx(
    model: Clamp3Model | object | str,
    out: str | Path,
    towers: Sequence[str] | None = None,
    precision: str = "fp32",
    overwrite: bool = False,
) -> Manifest:
    """Export ``towers`` (default: every tower of the model; ``"mert"`` adds the MERT front-end)
    of ``model`` (a loaded model or pipeline, a directory, an official ``.pth`` or a tag) to the
    directory ``out`` in ``precision``
    (``fp32``, ``int8`` or ``fp16``). ``out`` must not exist unless ``overwrite``; nothing is
    left there when any check fails. Returns the manifest written as ``out/onnx.json``.
    """
    _check_target(out, overwrite, precision)
    given = not isinstance(model, (str, os.PathLike))
    pipeline = model if given and hasattr(model, "encode_texts") else None  # a Clamp3Pipeline
    loaded = (
        pipeline.model if pipeline is not None else model if given else Clamp3Model.from_pretrained(model)
    )
    frontend = pipeline.audio_frontend if pipeline is not None and "mert" in (towers or ()) else None
    chosen = list(towers) if towers else list(loaded.config.modalities)
    for modality in chosen:
        loaded.config.tower("audio" if modality == "mert" else modality)  # ValueError naming it

    def build(staging: Path) -> dict[str, TowerEntry]:
        return {
            m: export_mert(loaded, frontend, staging)
            if m == "mert"
            else export_tower(loaded, m, staging, precision)
            for m in chosen
        }

    source = None if given else model
    return _write_directory(Path(out), loaded, source, precision, build, overwrite)


def derive_export(
    model: Clamp3Model | str,
    fp32_dir: str | Path,
    out: str | Path,
    precision: str,
    overwrite: bool = False,
) -> Manifest:
    """An int8 or fp16 directory from an existing fp32 export of ``model`` (no re-export),
    every graph checked against ``model`` as in :func:`export_onnx`."""
    from clamp3.model_identity import identify
    from clamp3.onnx.layout import read_manifest

    _check_target(out, overwrite, precision)
    src = Path(fp32_dir)
    manifest = read_manifest(src)
    loaded = model if isinstance(model, Clamp3Model) else Clamp3Model.from_pretrained(model)
    if manifest.precision != "fp32" or manifest.fingerprint != identify(loaded).fingerprint:
        raise CheckpointError(
            f"{src / 'onnx.json'}: not an fp32 export of this model ({manifest.fingerprint})"
        )

    def build(staging: Path) -> dict[str, TowerEntry]:
        entries = {}
        for m, e in manifest.towers.items():
            if m == "mert":  # the front-end stays fp32: copied as it is (graph and weights)
                for name in e.files:
                    shutil.copyfile(src / name, staging / name)
                entries[m] = e
            else:
                entries[m] = derive_tower(loaded, m, src / e.graph, staging / e.graph, precision, e.check)
        return entries

    return _write_directory(Path(out), loaded, manifest.source_id, precision, build, overwrite)


def _check_target(out: str | Path, overwrite: bool, precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose {', '.join(PRECISIONS)}")
    target = Path(out)
    if target.exists() and not overwrite and (not target.is_dir() or any(target.iterdir())):
        raise FileExistsError(f"{target}: already exists (pass --overwrite to replace it)")


def _write_directory(
    target: Path, model: Clamp3Model, source, precision: str, build, overwrite: bool
) -> Manifest:
    """Build the graphs in a temporary folder beside ``target``, add config, tokenizer and
    manifest, and rename it into place; on any error nothing is left."""
    from clamp3.model_identity import identify

    model.eval()
    identity = identify(model, source)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes it owner-only; the export is a normal folder
    try:
        entries = build(staging)
        model.config.save(staging / "config.json")
        tokenizer = _copy_tokenizer(model, staging) if model.config.text is not None else None
        manifest = Manifest(
            precision, OPSET, exporter_name(), identity.id, identity.fingerprint,
            text_digest(staging / "config.json"), entries, tokenizer,
        )  # fmt: skip
        write_manifest(staging, manifest)
        for path in staging.iterdir():  # onnx creates external-data files owner-only (0600)
            if path.is_file():
                os.chmod(path, 0o666 & ~umask)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _copy_tokenizer(model: Clamp3Model, staging: Path) -> str | None:
    """Save the text tokenizer beside the graphs; ``None`` when it cannot be found (the export
    then falls back to the config's hub tokenizer from the cache at load time, like a model)."""
    from clamp3.tokenizer import TokenizerNotFound, load_tokenizer

    try:
        load_tokenizer(model.config.tower("text"), model.asset_directory).save(staging)
    except TokenizerNotFound:
        return None
    return "tokenizer.json"

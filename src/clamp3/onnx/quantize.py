"""Lower-precision variants of an exported fp32 graph: int8 dynamic quantisation and float16.

Both work on the ONNX file alone (onnx + onnxruntime, no torch). The caller verifies the
result against torch before keeping it (:mod:`clamp3.onnx.export`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Dynamic int8: weights stored as int8 (per output channel for the matrix products), activations
# quantised per batch at run time. "Gather" quantises the embedding tables read by index (the
# 250k x 768 XLM-R token table, 3/4 of the text tower's bytes, and the position tables).
INT8_OPS = ["MatMul", "Gather"]

# Kept in float32 in the fp16 graph: normalisation statistics and the softmax are where fp16
# loses range (a LayerNorm epsilon of 1e-12 is below fp16's smallest subnormal, 6e-8, if it were
# ever materialised as a tensor), and they cost little.
FP16_KEEP_FP32 = ["LayerNormalization", "Softmax", "ReduceSum", "ReduceMean", "Div", "Pow", "Sqrt", "Erf"]


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 quantisation of ``src`` (an fp32 graph) into ``dst`` + ``<dst>.data``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(src),
        str(dst),
        op_types_to_quantize=INT8_OPS,
        per_channel=True,
        weight_type=QuantType.QInt8,
        # 7-bit weights. x86 CPUs without VNNI (AVX2 only) multiply u8 activations by s8
        # weights with 16-bit pairwise sums that saturate at full 8-bit range: on such a
        # machine the tiny model's symbolic graph fell to cosine 0.973 against torch. The export
        # is meant for any CPU, so it is made safe for all of them (ONNX Runtime's advice).
        reduce_range=True,
        use_external_data_format=True,  # memory-mapped at load (clamp3.onnx.export)
    )


def _to_float16(values: np.ndarray, min_positive_val: float = 5.96e-08, max_finite_val: float = 65504.0):
    """float32 -> float16 keeping sign and finiteness: magnitudes below fp16's smallest
    subnormal become it, finite ones above its maximum become the maximum (onnxruntime's
    mapping, in two vectorised passes instead of its ~12 masked copies: 100 s -> 3 s for the
    250k x 768 XLM-R token table)."""
    a = np.asarray(values, dtype=np.float32)
    mag = np.abs(a)
    out = np.where((mag > 0) & (mag < min_positive_val), np.copysign(np.float32(min_positive_val), a), a)
    out = np.where(np.isfinite(a) & (mag > max_finite_val), np.copysign(np.float32(max_finite_val), a), out)
    return out.astype(np.float16)


def convert_fp16(src: Path, dst: Path) -> None:
    """float16 weights (in ``<dst>.data``) and activations, float32 inputs and outputs
    (``keep_io_types``), with the ops of :data:`FP16_KEEP_FP32` left in float32 behind casts."""
    from unittest import mock

    import onnx
    from onnxruntime.transformers import float16
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    # The exporter records every intermediate type, so onnx shape inference (a full copy of a
    # 1 GB model, most of the conversion time) is not needed.
    with mock.patch.object(float16, "convert_np_to_float16", _to_float16):
        half = convert_float_to_float16(
            model, keep_io_types=True, op_block_list=FP16_KEEP_FP32, disable_shape_infer=True
        )
    save_graph(half, dst)


def save_graph(model, dst: Path) -> None:
    """Write an ``onnx.ModelProto`` as ``dst``, its tensors in ``<dst>.data``."""
    import onnx

    onnx.save_model(
        model, str(dst), save_as_external_data=True, all_tensors_to_one_file=True, location=dst.name + ".data"
    )

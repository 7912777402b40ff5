"""ONNX export and the ONNX Runtime backend (the ``onnx`` extra: onnx, onnxruntime, onnxscript).

    clamp3 export-onnx saas saas-onnx/ --quantize int8     # verified graphs + config + tokenizer
    from clamp3.onnx import OnnxModel
    model = OnnxModel.from_pretrained("saas-onnx/")          # torch-free for text queries
    vectors = model.encode(["a melancholy waltz for solo piano"])

``export`` and ``graphs`` need torch (they read the torch model); ``layout``, ``session``,
``quantize`` and ``runtime`` do not, and this package's import loads neither.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clamp3.onnx.layout import is_onnx_directory
from clamp3.utils.lazy import lazy_exports

__all__ = ["OnnxModel", "export_onnx", "is_onnx_directory"]

_LAZY = {"OnnxModel": "clamp3.onnx.runtime", "export_onnx": "clamp3.onnx.export"}

if TYPE_CHECKING:
    from clamp3.onnx.export import export_onnx
    from clamp3.onnx.runtime import OnnxModel


__getattr__ = lazy_exports(__name__, _LAZY)

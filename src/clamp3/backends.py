"""Which runtime a model source names: an ``export-onnx`` directory runs on ONNX Runtime
(:class:`clamp3.onnx.runtime.OnnxModel`, no torch imported), anything else is a
:class:`clamp3.model.Clamp3Model` (a converted directory, an official ``.pth`` or a tag).
Commands load through :func:`clamp3.loading.load_pipeline`, which chooses the device and dtype
and calls this.

Both objects offer the item-level contract (``embed_text_ids``, ``embed_patches``,
``embed_audio_features``, ``encode``, ``config``, ``tokenizer``), so the jobs on top of them
(embed, index search, serve, zero-shot) take either.
"""

from __future__ import annotations

import os
from typing import Any


def load(source: Any, device: str | None = None, dtype: Any = None, one_shot: bool = False) -> Any:
    """``source`` loaded (an object that is already a model is returned as it is).

    ``dtype`` (a torch dtype) applies to the torch backend only: an ONNX export's precision is
    fixed when it is exported (``--quantize int8`` / ``--fp16``). ``one_shot``: the model will
    encode one query and the process ends (an ONNX export then opens faster and runs slower;
    torch ignores it).
    """
    if not isinstance(source, (str, os.PathLike)):
        return source
    from clamp3.onnx.layout import is_onnx_directory

    if is_onnx_directory(source):
        from clamp3.onnx.runtime import OnnxModel

        return OnnxModel.from_pretrained(source, device=device, one_shot=one_shot)
    from clamp3.model import Clamp3Model

    return Clamp3Model.from_pretrained(source, device=device, dtype=dtype)

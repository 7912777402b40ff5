"""Turning a model argument into a pipeline: the one rule every command, the service and the
demo follow (:func:`load_pipeline`). :meth:`clamp3.pipeline.Clamp3Pipeline.from_pretrained` is
the plain constructor below it (what you pass is what you get: no device choice, no index
default)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Protocol

from clamp3.pipeline import Clamp3Pipeline
from clamp3.utils.errors import InputError

if TYPE_CHECKING:
    import torch

    from clamp3.captioning import Captioner
    from clamp3.model import Clamp3Model


class RecordsModel(Protocol):
    """What :func:`load_pipeline` reads of an index (:class:`clamp3.index.SearchIndex`): the id
    of the model that embedded it (a tag or an absolute path; ``None`` when none was stored)
    and where it lives (named in errors)."""

    model: str | None
    directory: os.PathLike | str | None


def load_pipeline(
    model: Clamp3Model | Clamp3Pipeline | str | os.PathLike | None = None,
    *,
    device: str | None = None,
    dtype: str | torch.dtype | None = None,
    captioner: Captioner | str | os.PathLike | None = None,
    index: RecordsModel | None = None,
    one_shot: bool = False,
) -> Clamp3Pipeline:
    """The pipeline for a model argument, as every command, the service and the demo resolve it.

    ``model``: a converted directory, an official ``.pth``, a tag (``saas``, ``c2``, ...), an
    ``export-onnx`` directory (run by ONNX Runtime without importing torch), a loaded model
    (wrapped) or a pipeline (returned as it is); ``None`` is the model ``index`` records.
    ``device``: ``None`` / ``"auto"`` picks this process's GPU when there is one, else the CPU;
    ``dtype`` (``fp32``/``fp16``/``bf16`` or a torch dtype) defaults to float32 on the CPU and
    float16 on a GPU (:mod:`clamp3.utils.device`). Towers load on first use. ``one_shot``: the
    pipeline encodes one query and the process ends (``clamp3 search``): an ONNX export then
    opens its towers without weight prepacking (:class:`clamp3.onnx.session.TowerSession`).

    Raises ``InputError`` when ``model`` is ``None`` and ``index`` records no model (or no index
    is given), or when a ``dtype`` is asked of an ONNX export (its precision is fixed at
    export); ``UsageError`` for a device this machine lacks; ``CheckpointError`` for weights
    that cannot be resolved.
    """
    from clamp3.backends import load
    from clamp3.onnx.layout import is_onnx_directory

    if model is None:
        model = _recorded_model(index)
    if not isinstance(model, (str, os.PathLike)):
        return model if hasattr(model, "encode_texts") else Clamp3Pipeline(model, captioner=captioner)
    if is_onnx_directory(model):
        if dtype is not None:
            raise InputError(f"dtype {dtype}", "an ONNX export has the precision it was exported with")
        return Clamp3Pipeline(load(model, device=device, one_shot=one_shot), captioner=captioner)
    from clamp3.utils.device import model_dtype, resolve_device

    chosen = resolve_device(device)
    return Clamp3Pipeline(load(model, device=chosen, dtype=model_dtype(dtype, chosen)), captioner=captioner)


def _recorded_model(index: RecordsModel | None) -> str:
    if index is None:
        raise InputError("model", "no model given and no index to take it from")
    if not index.model:
        where = str(index.directory) if index.directory is not None else "the index"
        raise InputError(where, "the index stores no model id: pass --model")
    return index.model

"""Pick the audio front-end a model was trained with (``AudioTowerConfig.frontend``)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from clamp3.audio.base import WindowFrontend
from clamp3.config import AudioTowerConfig

FRONTENDS = ("mert-v1-95m", "logmel")


def load_frontend(
    audio_cfg: AudioTowerConfig,
    model_dir: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
) -> WindowFrontend:
    """The front-end whose rows ``audio_cfg``'s tower expects.

    ``"mert-v1-95m"``: :class:`MertExtractor` from ``<model_dir>/mert`` when that folder exists,
    else ``m-a-p/MERT-v1-95M`` through the Hugging Face cache. ``"logmel"``:
    :class:`LogMelFrontend` with ``audio_cfg.feature_dim`` values (no weights).
    """
    if audio_cfg.frontend == "logmel":
        from clamp3.audio.logmel import LogMelFrontend

        return LogMelFrontend(audio_cfg.feature_dim)
    if audio_cfg.frontend == "mert-v1-95m":
        from clamp3.audio.mert import HUB_NAME, MertExtractor

        local = Path(model_dir) / "mert" if model_dir is not None else None
        source = local if local is not None and local.is_dir() else HUB_NAME
        extractor = MertExtractor.from_pretrained(source, device=device, dtype=dtype)
        if extractor.feature_dim != audio_cfg.feature_dim:
            raise ValueError(
                f"{source}: MERT gives {extractor.feature_dim} features, the audio tower expects "
                f"{audio_cfg.feature_dim}"
            )
        return extractor
    raise ValueError(f"unknown audio front-end {audio_cfg.frontend!r} (known: {', '.join(FRONTENDS)})")

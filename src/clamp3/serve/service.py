"""Assemble the service: model -> query encoder, index -> catalog, renderer, upload area -> app."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from clamp3.serve.app import create_app
from clamp3.serve.catalog import Catalog
from clamp3.serve.encoder import QueryEncoder
from clamp3.serve.media import MediaRoot
from clamp3.serve.render import Renderer
from clamp3.serve.settings import Settings
from clamp3.serve.uploads import UploadArea

if TYPE_CHECKING:
    from fastapi import FastAPI

    from clamp3.model import Clamp3Model


def build_app(
    index_dir: str | os.PathLike,
    media_root: str | os.PathLike,
    model: Clamp3Model | None,
    settings: Settings | None = None,
    renderer: Renderer | None = None,
) -> FastAPI:
    """The ASGI app serving ``index_dir`` with files under ``media_root``.

    ``model`` encodes text and uploaded queries (``None``: only "more like this" works); its
    towers are built before the app is returned, so the first request is as fast as the rest.
    Raises ``InputError`` when the index cannot be read or its dimension differs from the
    model's, and ``ModelMismatch`` when another model embedded it (unless
    ``settings.allow_model_mismatch``).
    """
    settings = settings or Settings()
    media = MediaRoot(media_root)
    encoder = None
    if model is not None:
        encoder = QueryEncoder(
            model,
            max_audio_seconds=settings.max_audio_seconds,
            max_unpacked_bytes=settings.max_unpacked_bytes,
            conversion_timeout=settings.conversion_timeout,
            max_image_pixels=settings.max_image_pixels,
        )
    try:
        if encoder is not None:
            encoder.warm_up()
        catalog = Catalog(index_dir, media, encoder, settings.allow_model_mismatch)
        uploads = UploadArea([media.root, Path(index_dir)])
    except BaseException:
        if encoder is not None:
            encoder.close()
        raise
    return create_app(catalog, renderer or Renderer(), uploads, settings)

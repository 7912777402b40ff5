"""clamp3: CLaMP 3 for music information retrieval across sheet music, MIDI, audio and text.

The public API is re-exported here lazily (PEP 562), so ``import clamp3.curate`` or a CLI
sub-command that needs no model does not pay for importing torch and transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clamp3.utils.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "AudioTowerConfig": "clamp3.config",
    "Clamp3Config": "clamp3.config",
    "EncoderConfig": "clamp3.config",
    "SymbolicTowerConfig": "clamp3.config",
    "TextTowerConfig": "clamp3.config",
    "list_presets": "clamp3.config",
    "load_preset": "clamp3.config",
    "Clamp3Model": "clamp3.model",
    "Clamp3Output": "clamp3.model",
    "Clamp3Pipeline": "clamp3.pipeline",
    "load_pipeline": "clamp3.loading",
    "InputError": "clamp3.utils.errors",
}

__all__ = [
    "AudioTowerConfig",
    "Clamp3Config",
    "Clamp3Model",
    "Clamp3Output",
    "Clamp3Pipeline",
    "EncoderConfig",
    "InputError",
    "SymbolicTowerConfig",
    "TextTowerConfig",
    "list_presets",
    "load_pipeline",
    "load_preset",
]

if TYPE_CHECKING:
    from clamp3.config import (
        AudioTowerConfig,
        Clamp3Config,
        EncoderConfig,
        SymbolicTowerConfig,
        TextTowerConfig,
        list_presets,
        load_preset,
    )
    from clamp3.loading import load_pipeline
    from clamp3.model import Clamp3Model, Clamp3Output
    from clamp3.pipeline import Clamp3Pipeline
    from clamp3.utils.errors import InputError


__getattr__ = lazy_exports(__name__, _EXPORTS)

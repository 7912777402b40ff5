"""clamp3: CLaMP 3 for music information retrieval across sheet music, MIDI, audio and text.

The public API is re-exported here; heavy parts (preprocessing libraries, audio decoding,
FAISS, the service, training) are imported only by the modules that need them.
"""

from clamp3.config import (
    AudioTowerConfig,
    Clamp3Config,
    EncoderConfig,
    SymbolicTowerConfig,
    TextTowerConfig,
    list_presets,
    load_preset,
)
from clamp3.model import Clamp3Model, Clamp3Output

__version__ = "0.1.0"

__all__ = [
    "AudioTowerConfig",
    "Clamp3Config",
    "Clamp3Model",
    "Clamp3Output",
    "EncoderConfig",
    "SymbolicTowerConfig",
    "TextTowerConfig",
    "list_presets",
    "load_preset",
]

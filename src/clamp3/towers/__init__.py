"""The three encoders. Each builder takes plain arguments (an ``EncoderConfig`` and sizes) and
returns a module whose state-dict names are the official CLaMP 3 ones under its prefix."""

from clamp3.towers.audio import build_audio_tower
from clamp3.towers.symbolic import PatchEncoder, build_symbolic_tower
from clamp3.towers.text import build_text_tower

__all__ = ["PatchEncoder", "build_audio_tower", "build_symbolic_tower", "build_text_tower"]

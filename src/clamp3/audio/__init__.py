"""Audio front-ends: decode any wav/flac/ogg/mp3 to 24 kHz mono and turn it into one feature row
per 5-second window, exactly as the official CLaMP 3 MERT extractor does.

Needs the ``audio`` extra (soundfile). ``import clamp3`` does not import this package.
"""

from clamp3.audio.base import FileFeatures, WindowFrontend
from clamp3.audio.frontends import load_frontend
from clamp3.audio.io import AUDIO_EXTENSIONS, SAMPLE_RATE, is_audio_file, load_audio
from clamp3.audio.logmel import LogMelFrontend
from clamp3.audio.mert import HUB_NAME, MertExtractor
from clamp3.audio.resample import resample
from clamp3.audio.windows import MIN_WINDOW_SAMPLES, WINDOW_SAMPLES, window_bounds

__all__ = [
    "AUDIO_EXTENSIONS",
    "HUB_NAME",
    "MIN_WINDOW_SAMPLES",
    "SAMPLE_RATE",
    "WINDOW_SAMPLES",
    "FileFeatures",
    "LogMelFrontend",
    "MertExtractor",
    "WindowFrontend",
    "is_audio_file",
    "load_audio",
    "load_frontend",
    "resample",
    "window_bounds",
]

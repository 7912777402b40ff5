"""Optional dependencies: one way to import them and to say which extra brings them."""

from __future__ import annotations

import importlib
from types import ModuleType


def optional_module(name: str, need: str, extra: str) -> ModuleType:
    """``import name``; when it is missing, an ``ImportError`` reading ``"<need>: pip install
    'clamp3[<extra>]'"`` (``need`` says what needs which package, e.g. ``"audio decoding
    needs soundfile"``), chained to the original error."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(f"{need}: pip install 'clamp3[{extra}]'") from exc

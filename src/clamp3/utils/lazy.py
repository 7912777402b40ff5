"""Lazy package exports (PEP 562), so importing a package does not import what its names need
until one is used (``import clamp3`` without torch, ``clamp3.index`` without the builder)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, homes: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``name`` in ``homes`` is imported from the
    module ``homes[name]`` on first use and kept in the package; any other name is an
    ``AttributeError`` (so ``from package import submodule`` still finds submodules)."""

    def __getattr__(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(homes[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__

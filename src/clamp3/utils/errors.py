"""The error raised for bad user input: it always names the file (or item) and the reason."""

from __future__ import annotations

import os


class InputError(ValueError):
    """A bad input file or item. ``str(err)`` is ``"<path>: <reason>"``."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: the message names the file and the reason."""

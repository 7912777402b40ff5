"""The errors raised for bad user input, unusable settings and unloadable checkpoints.

How the ``clamp3`` command reports them is decided in one place, :mod:`clamp3.cli.main`.

Both cross process boundaries: worker processes (``embed --workers``, ``convert``) raise them
and the parent re-raises or logs them, so they must survive a pickle round trip. An exception
is pickled as ``(class, self.args)``; ``InputError`` builds its message from two arguments, so it
says how to rebuild itself (``__reduce__``) instead of relying on ``args``.
"""

from __future__ import annotations

import os


class InputError(ValueError):
    """A bad input file or item. ``str(err)`` is ``"<path>: <reason>"``."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self) -> tuple[type[InputError], tuple[str, str]]:
        return type(self), (self.path, self.reason)


class UsageError(ValueError):
    """Arguments or settings that cannot work together (no file is at fault), e.g. ``--plot``
    without labels. The CLI prints it as ``error: <message>`` with exit status 2."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: the message names the file and the reason."""

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)

    def __reduce__(self) -> tuple[type[CheckpointError], tuple[str]]:
        return type(self), (self.message,)

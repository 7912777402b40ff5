"""The one tree walker: every command that takes a folder of inputs lists it here.

Policy, the same for embed, convert, extract-audio, index, evaluation, training data, corpus
selection and curation:

- recursive and deterministic: paths sorted (as ``Path`` objects: by their parts);
- hidden entries are skipped: a file or folder whose name starts with ``.`` (``.git``,
  ``.DS_Store``, editor backups, and the ``.<name>.<random>.tmp`` files of
  :func:`clamp3.utils.io.atomic_path`);
- symbolic links to folders are not followed (no cycles); links to files are listed;
- ``skip``: folders left out with everything below them, e.g. an output folder inside the
  input folder (compared after resolving links); ``prune(folder)`` leaves out more;
- a subfolder that cannot be listed (permissions, vanished during the walk) is not an exception
  but an entry of :attr:`Listing.errors` (an :class:`~clamp3.utils.errors.InputError` naming
  it), so the caller reports it beside its other per-file errors and the rest is still listed.

Not for a package's own bookkeeping folders (checkpoints, caches, the temporaries clean-up),
which must see every file they wrote.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from clamp3.utils.errors import InputError


@dataclass
class Listing:
    """The files found (sorted) and the subfolders that could not be listed."""

    files: list[Path] = field(default_factory=list)
    errors: list[InputError] = field(default_factory=list)


def is_hidden(name: str) -> bool:
    return name.startswith(".")


def walk_files(
    root: str | os.PathLike,
    suffixes: Iterable[str] | None = None,
    skip: Iterable[str | os.PathLike | None] = (),
    prune: Callable[[Path], bool] | None = None,
) -> Listing:
    """Files below ``root`` whose lower-case suffix is in ``suffixes`` (None: every file), by
    the policy of the module docstring. ``root`` itself must be a folder (callers check)."""
    root = Path(root)
    wanted = None if suffixes is None else {s.lower() for s in suffixes}
    skipped = {Path(d).resolve() for d in skip if d is not None}
    listing = Listing()

    def unlistable(exc: OSError) -> None:
        where = os.fspath(exc.filename) if exc.filename is not None else str(root)
        listing.errors.append(
            InputError(where, f"cannot list this folder, its files were left out: {exc.strerror or exc}")
        )

    for dirpath, dirnames, filenames in os.walk(root, onerror=unlistable):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not is_hidden(d)
            and (here / d).resolve() not in skipped
            and (prune is None or not prune(here / d))
        )
        for name in filenames:
            if not is_hidden(name) and (wanted is None or Path(name).suffix.lower() in wanted):
                listing.files.append(here / name)
    listing.files.sort()
    return listing

"""Reading the items the classify and gen-score pipelines work on, and checking output paths.

Items are files encoded by a model or embedding folders written by ``clamp3 embed``; each keeps
its relative path and modality so that pipelines can keep only the modalities they are about
(gen-score scores music, never the prompt ``.txt`` files lying beside it).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from clamp3.evaluate.labels import normalize_relpath
from clamp3.utils.errors import InputError
from clamp3.utils.walk import walk_files

if TYPE_CHECKING:
    from clamp3.index.embeddings import EmbeddingSet
    from clamp3.model import Clamp3Model
    from clamp3.pipeline import Clamp3Pipeline

PIECE_MODALITIES = ("symbolic", "audio")  # what a generated piece can be; text never is

# (relative paths, modalities) -> indices of the items to keep
Selector = Callable[[list[str], list["str | None"]], list[int]]


@dataclass
class Items:
    """Vectors (N, D) float32, not normalised, with their relative paths (with extension).

    ``modalities[i]`` is row ``i``'s modality (``None``: unknown, an embedding without a
    manifest record); ``ignored`` lists inputs left out by a modality filter; ``failed`` the
    files that could not be read, ``{"path", "reason"}`` (the ``errors.jsonl`` fields, no time).
    """

    paths: list[str]
    vectors: np.ndarray
    modalities: list[str | None] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)


def check_output_file(path: str | os.PathLike) -> Path:
    """Refuse an output path whose missing folders look like a typo; return it as a ``Path``.

    Writers create the output's own folder (``out/preds.json`` with ``out/`` missing is fine),
    but a path needing more than that folder (``/nonexistent/dir/x.json``) is refused naming
    the first missing folder, as is a path that is an existing folder or lies under a file.
    Raises ``InputError``.
    """
    target = Path(path).expanduser()
    if target.is_dir():
        raise InputError(target, "is a folder; give a file name")
    parent = target.absolute().parent
    existing = parent
    while not existing.exists():  # the file system's root always does
        existing = existing.parent
    if not existing.is_dir():  # else found only after the work, when the writer fails
        raise InputError(target, f"{existing} is a file, not a folder")
    if existing not in (parent, parent.parent):
        # More than one missing level is far more often a typo than a wish for a new tree.
        first = next(folder for folder in (parent, *parent.parents) if folder.parent == existing)
        raise InputError(target, f"folder {first} does not exist (only the output's own folder is created)")
    return target


def collect_files(sources: Sequence[str | os.PathLike]) -> list[tuple[Path, str]]:
    """Files to encode -> ``(path, relative path)``.

    A folder contributes every supported file below it (:mod:`clamp3.utils.walk`: hidden
    entries skipped; a folder that cannot be listed is an ``InputError``), named relative to
    that folder; a file is named as given.
    """
    from clamp3.inputs import extensions

    found: dict[Path, str] = {}
    for source in sources:
        root = Path(source)
        if root.is_file():
            found.setdefault(root, normalize_relpath(str(source)))
            continue
        if not root.is_dir():
            raise InputError(root, "no such file or folder")
        listing = walk_files(root, extensions())
        if listing.errors:  # a silently partial evaluation set would bias every score
            raise listing.errors[0]
        for path in listing.files:
            found.setdefault(path, path.relative_to(root).as_posix())
    if not found:
        raise InputError(", ".join(map(str, sources)), "no supported input files found")
    return sorted(found.items(), key=lambda item: item[1])


def _modality_of(path: str) -> str | None:
    from clamp3.inputs import modality_of

    try:
        return modality_of(path)
    except InputError:
        return None


def _describe(paths: list[str], modalities: list[str | None], limit: int = 5) -> str:
    shown = [f"{p} ({m or 'unknown'})" for p, m in zip(paths[:limit], modalities[:limit])]
    return ", ".join(shown) + (f" ... and {len(paths) - limit} more" if len(paths) > limit else "")


def keep_modalities(
    paths: list[str], modalities: list[str | None], allowed: Collection[str], source: str
) -> list[int]:
    """Indices of the items whose modality is in ``allowed`` (unknown modalities kept).

    Raises ``InputError`` naming the items found when none is left.
    """
    keep = [i for i, m in enumerate(modalities) if m is None or m in allowed]
    if not keep:
        raise InputError(
            source, f"no {' or '.join(sorted(allowed))} items; found only {_describe(paths, modalities)}"
        )
    return keep


def select_pieces(
    paths: list[str], modalities: list[str | None], modality: str | None, source: str
) -> list[int]:
    """Indices of the generated (or reference) pieces among ``paths``: items of ``modality``, or
    of the one piece modality present; text files (e.g. prompts lying beside) are never pieces.

    Raises ``InputError`` naming files when none is left or symbolic and audio pieces are mixed.
    """
    keep = keep_modalities(paths, modalities, (modality,) if modality else PIECE_MODALITIES, source)
    found = sorted({modalities[i] for i in keep if modalities[i]})
    if len(found) > 1:
        examples = "; ".join(
            f"{kind}: {', '.join([paths[i] for i in keep if modalities[i] == kind][:3])}" for kind in found
        )
        raise InputError(
            source,
            f"mixes {' and '.join(found)} pieces ({examples}); score one modality at a time "
            "(--modality symbolic|audio)",
        )
    return keep


def read_embedding_folder(folder: str | os.PathLike, dim: int | None, show_progress: bool) -> EmbeddingSet:
    """An embedding folder, read past its bad files as the file inputs of these pipelines are:
    each is reported (``error: <file>: <reason>`` on stderr) and kept in ``.errors``
    (:func:`failures_of`). ``InputError`` when no file can be read or the folder is missing."""
    from clamp3.index.embeddings import load_embeddings

    found = load_embeddings(folder, dim=dim, skip_errors=True, progress=show_progress)
    for err in found.errors:
        print(f"error: {err}", file=sys.stderr)
    return found


def failures_of(found: EmbeddingSet) -> list[dict[str, str]]:
    """The files of ``found`` that could not be read, ``{path, reason}`` with the path inside
    the folder (``jazz/take1.npy``), as ``Items.failed`` lists the files that failed to encode."""
    records = []
    for err in found.errors:
        path = Path(err.path)
        rel = path.relative_to(found.root).as_posix() if path.is_relative_to(found.root) else str(path)
        records.append({"path": rel, "reason": err.reason})
    return records


def load_items(
    sources: Sequence[str | os.PathLike],
    model: Clamp3Model | Clamp3Pipeline | None,
    embeddings: bool,
    batch_size: int = 32,
    show_progress: bool = False,
    select: Selector | None = None,
) -> Items:
    """Vectors of ``sources``: embedding folders (``embeddings=True``) or files encoded by ``model``.

    ``select(paths, modalities)`` returns the indices of the items to keep (all by default)
    and may raise ``InputError``; it runs before any file is encoded. Modalities are
    ``"text"``, ``"symbolic"``, ``"audio"``, or ``None`` for an embedding without a manifest
    record. Items left out are listed in ``Items.ignored``.
    """
    select = select or (lambda paths, _: list(range(len(paths))))
    if embeddings:
        paths, kinds, blocks, failed = [], [], [], []
        for folder in sources:
            found = read_embedding_folder(folder, blocks[0].shape[1] if blocks else None, show_progress)
            paths.extend(found.paths)
            kinds.extend(found.modalities)
            blocks.append(found.vectors)
            failed.extend(failures_of(found))
        keep = select(paths, kinds)
        ignored = [paths[i] for i in sorted(set(range(len(paths))) - set(keep))]
        vectors = np.concatenate(blocks)[keep]
        return Items([paths[i] for i in keep], vectors, [kinds[i] for i in keep], ignored, failed)
    if model is None:
        raise ValueError("a model is needed to encode files (or pass embedding folders)")
    files = collect_files(sources)
    kinds = [_modality_of(rel) for _, rel in files]
    keep = select([rel for _, rel in files], kinds)
    ignored = [files[i][1] for i in sorted(set(range(len(files))) - set(keep))]
    items = _encode_files([(*files[i], kinds[i]) for i in keep], model, batch_size, show_progress)
    items.ignored = ignored
    if files and keep and not items.paths:
        raise InputError(
            ", ".join(map(str, sources)), f"no file could be read ({len(keep)} failed; errors above)"
        )
    return items


def _encode_files(
    files: list[tuple[Path, str, str | None]],
    model: Clamp3Model | Clamp3Pipeline,
    batch_size: int,
    show_progress: bool,
) -> Items:
    """Encode ``(path, relative path, modality)`` files; a file that cannot be read is reported
    (``error: <path>: <reason>`` on stderr, as ``clamp3 embed`` does) and left out, and the rest
    go on: one corrupt file among thousands must not cost the whole run (``Preparer.embed_many``,
    what ``clamp3 embed`` runs)."""
    from tqdm.auto import tqdm

    from clamp3.encode import Preparer
    from clamp3.pipeline import ENCODE_CHUNK, as_pipeline

    pipeline = as_pipeline(model)
    paths: list[str] = []
    modalities: list[str | None] = []
    blocks: list[np.ndarray] = []
    failed: list[dict[str, str]] = []
    with Preparer(pipeline) as preparer, tqdm(
        total=len(files), disable=not show_progress, desc="encoding", unit="file"
    ) as bar:
        for lo in range(0, len(files), ENCODE_CHUNK):
            chunk = files[lo : lo + ENCODE_CHUNK]
            vectors = []
            outcomes = preparer.embed_many([c[0] for c in chunk], None, batch_size)
            for (path, rel, kind), outcome in zip(chunk, outcomes, strict=True):
                if isinstance(outcome, InputError):
                    failed.append({"path": rel, "reason": outcome.reason})
                    tqdm.write(f"error: {path}: {outcome.reason}", file=sys.stderr)
                else:
                    vectors.append(outcome[1])
                    paths.append(rel)
                    modalities.append(kind)
            if vectors:
                blocks.append(np.stack(vectors).astype(np.float32, copy=False))
            bar.update(len(chunk))
    vectors = np.concatenate(blocks) if blocks else np.zeros((0, pipeline.dim), np.float32)
    return Items(paths, vectors, modalities, failed=failed)

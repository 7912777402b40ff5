"""Bulk feature extraction over a folder tree, in the official on-disk format.

``IN/<rel>/<name>.<wav|flac|ogg|mp3>`` -> ``OUT/<rel>/<name>.npy``, float32 (1, n_windows, D):
what the official ``extract_mert.py --mean_features`` writes (it takes only ``wav``/``mp3`` and is
case-sensitive; here all four formats, any case). Outputs are written atomically; a rerun skips
files whose output exists, so an interrupted run resumes where it stopped. Failures are appended
to ``OUT/errors.jsonl`` (``clamp3.utils.errorlog``; ``path`` relative to IN) and the run goes on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from clamp3.audio.base import WindowFrontend
from clamp3.audio.io import AUDIO_EXTENSIONS
from clamp3.utils.errorlog import ERRORS_NAME, append_error
from clamp3.utils.io import save_npy_atomic
from clamp3.utils.walk import Listing, walk_files


@dataclass
class ExtractReport:
    """Counts of one run; ``failed`` lists (relative path, reason)."""

    written: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)


def list_audio_files(root: str | os.PathLike, exclude: str | os.PathLike | None = None) -> Listing:
    """Audio files under ``root`` (extensions case-insensitive) by the walker's policy
    (:mod:`clamp3.utils.walk`: sorted, hidden entries skipped, unlistable folders reported),
    leaving out ``exclude`` (the output folder)."""
    return walk_files(root, AUDIO_EXTENSIONS, skip=[exclude])


def output_path(in_dir: Path, out_dir: Path, file: Path) -> Path:
    """``OUT/<relative path without extension>.npy`` for ``file`` under ``in_dir``."""
    return out_dir / file.relative_to(in_dir).with_suffix(".npy")


def extract_tree(
    in_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    frontend: WindowFrontend,
    show_progress: bool = True,
) -> ExtractReport:
    """Write one ``.npy`` of window features per audio file under ``in_dir`` (see module doc)."""
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    if not in_dir.is_dir():
        raise NotADirectoryError(f"{in_dir}: not a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    report = ExtractReport()
    todo: list[Path] = []
    claimed: dict[Path, Path] = {}
    listing = list_audio_files(in_dir, exclude=out_dir)
    for error in listing.errors:
        _fail(report, out_dir, Path(os.path.relpath(error.path, in_dir)), error.reason)
    for file in listing.files:
        target = output_path(in_dir, out_dir, file)
        if target in claimed:  # e.g. song.wav and song.mp3 side by side
            _fail(
                report,
                out_dir,
                file.relative_to(in_dir),
                f"same output {target.name} as {claimed[target].name}",
            )
            continue
        claimed[target] = file
        if target.exists():
            report.skipped += 1
        else:
            todo.append(file)
    for result in frontend.features_from_files(todo, show_progress=show_progress):
        file = Path(result.path)
        if result.error is not None:
            _fail(report, out_dir, file.relative_to(in_dir), result.error.reason)
            continue
        save_npy_atomic(output_path(in_dir, out_dir, file), result.features[None])
        report.written += 1
    return report


def _fail(report: ExtractReport, out_dir: Path, rel: Path, reason: str) -> None:
    report.failed.append((str(rel), reason))
    append_error(out_dir / ERRORS_NAME, rel.as_posix(), reason)

"""Bulk feature extraction over a folder tree, in the official on-disk format.

``IN/<rel>/<name>.<wav|flac|ogg|mp3>`` -> ``OUT/<rel>/<name>.npy``, float32 (1, n_windows, D):
what the official ``extract_mert.py --mean_features`` writes (it takes only ``wav``/``mp3`` and is
case-sensitive; here all four formats, any case). Outputs are written atomically; a rerun skips
files whose output exists and is newer than the recording, so an interrupted run resumes where it
stopped and an edited recording is extracted again. ``OUT/extract.json`` records the front-end;
a rerun with another one (a different model, feature size or dtype) is refused, since its
features would be mixed with the earlier ones. Failures are appended to ``OUT/errors.jsonl``
(``clamp3.utils.errorlog``; ``path`` relative to IN; a rerun keeps one record per file still
failing) and the run goes on.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from clamp3.audio.base import WindowFrontend
from clamp3.audio.io import AUDIO_EXTENSIONS
from clamp3.utils.errorlog import ERRORS_NAME, append_error, keep_errors
from clamp3.utils.errors import InputError
from clamp3.utils.io import save_npy_atomic, write_json_atomic
from clamp3.utils.walk import Listing, walk_files

RECORD_NAME = "extract.json"


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


def frontend_record(frontend: WindowFrontend, source: str | None = None) -> dict[str, str | int]:
    """What ``extract.json`` says of a front-end: its class, where it came from (``source``: the
    ``--model`` argument; a local folder recorded absolute), its feature size and dtype; equal
    records give equal features."""
    if source and Path(source).exists():
        source = str(Path(source).resolve())
    return {
        "frontend": type(frontend).__name__,
        "source": source or "",
        "feature_dim": int(frontend.feature_dim),
        "dtype": str(getattr(frontend, "dtype", "float32")).removeprefix("torch."),
    }


def check_frontend(out_dir: Path, record: dict[str, str | int]) -> None:
    """Refuse an ``OUT`` whose features came from another front-end; record this one."""
    path = out_dir / RECORD_NAME
    earlier = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    if earlier is not None and earlier != record:
        raise InputError(
            out_dir,
            f"holds features of {earlier} but this run uses {record}: choose another OUT (or empty it)",
        )
    if earlier is None:
        write_json_atomic(path, record)


def extract_tree(
    in_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    frontend: WindowFrontend,
    show_progress: bool = True,
    source: str | None = None,
) -> ExtractReport:
    """Write one ``.npy`` of window features per audio file under ``in_dir`` (see module doc).

    ``source`` names the front-end's weights (the ``--model`` argument) in ``extract.json``.
    Raises ``InputError`` for an ``OUT`` holding another front-end's features."""
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    if not in_dir.is_dir():
        raise NotADirectoryError(f"{in_dir}: not a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    check_frontend(out_dir, frontend_record(frontend, source))
    report = ExtractReport()
    todo: list[Path] = []
    claimed: dict[Path, Path] = {}
    listing = list_audio_files(in_dir, exclude=out_dir)
    for error in listing.errors:
        _fail(report, out_dir, Path(os.path.relpath(error.path, in_dir)), error.reason)
    for file in listing.files:
        target = output_path(in_dir, out_dir, file)
        if target in claimed:  # e.g. song.wav and song.mp3 side by side
            clash = f"same output {target.name} as {claimed[target].name}"
            _fail(report, out_dir, file.relative_to(in_dir), clash)
            continue
        claimed[target] = file
        if target.exists() and target.stat().st_mtime_ns >= file.stat().st_mtime_ns:
            report.skipped += 1
        else:  # missing, or older than an edited recording
            todo.append(file)
    # As embed does: records of files fixed or gone are dropped; one record per file still failing.
    keep = {file.relative_to(in_dir).as_posix() for file in todo}
    keep.update(Path(rel).as_posix() for rel, _ in report.failed)
    keep_errors(out_dir / ERRORS_NAME, keep.__contains__)
    for result in frontend.features_from_files(todo, show_progress=show_progress):
        file = Path(result.path)
        if result.error is not None:
            _fail(report, out_dir, file.relative_to(in_dir), result.error.reason)
            continue
        save_npy_atomic(output_path(in_dir, out_dir, file), result.features[None])
        report.written += 1
        keep.discard(file.relative_to(in_dir).as_posix())
    keep_errors(out_dir / ERRORS_NAME, keep.__contains__)
    return report


def _fail(report: ExtractReport, out_dir: Path, rel: Path, reason: str) -> None:
    report.failed.append((str(rel), reason))
    append_error(out_dir / ERRORS_NAME, rel.as_posix(), reason)

"""Every training file is checked before the first step: a bad file costs a log line, not the run.

A file is bad when training could not read it: it does not exist; a symbolic file cannot be
read as UTF-8 or patchified (an empty ``.abc``); an audio feature file is not an ``(n, F)`` /
``(1, n, F)`` array with n >= 1 and finite values. The check calls the functions the data
loader calls (:func:`~clamp3.train.data.file_patches`, :func:`~clamp3.train.data.load_feature_rows`),
so a file that passes here loads in training.

Bad files are dropped from their records (a record left without a file of the stage's
modality is skipped) and listed in ``RUN/bad_items.jsonl``, one object per file::

    {"data": "/d/train.jsonl", "modality": "symbolic", "file": "/d/abc/0007.abc",
     "records": ["wikimt_0007"], "reason": "cannot be patched (nothing to patchify: the text is empty)"}

``"bad_items": "fail"`` in the run config stops the run before training instead. Each data
source's result is cached in ``RUN/data_check.json`` under its path, size and modification
time (a folder: those of every file in it) and the reading settings, so a resumed run does
not check again; files edited in place after the check are not re-checked (a file that then
fails in training stops the run as it would without the check). Under torchrun every rank
checks a slice of the files with a pool of forked workers (CPU count / processes per node).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from clamp3.train.config import TrainConfig
from clamp3.train.data import file_patches, load_feature_rows, load_patchify
from clamp3.train.distributed import DistEnv, all_gather_objects, barrier, broadcast_object, shard
from clamp3.train.interrupt import ignore_stop_signals
from clamp3.train.records import list_symbolic_files, load_records, modality_of, records_for, resolve_file
from clamp3.utils.errors import InputError
from clamp3.utils.io import json_text, write_json_atomic, write_text_atomic
from clamp3.utils.walk import walk_files
from clamp3.utils.workers import run_isolated

log = logging.getLogger(__name__)

BAD_ITEMS_FILE = "bad_items.jsonl"
CACHE_FILE = "data_check.json"
CACHE_FORMAT = 1
SERIAL_BELOW = 256  # files; fewer are checked in-process (starting a pool costs more)
CHUNK = 64  # files per worker call


@dataclass(frozen=True)
class ReadRules:
    """The settings that decide whether a file loads: the symbolic tower's ``L:1/8`` stripping
    and the audio tower's feature width (None: the model has no audio tower)."""

    strip_default_length: bool = True
    feature_dim: int | None = None


def read_rules(config: TrainConfig) -> ReadRules:
    """The run's reading settings, from its architecture preset or its ``init_from`` model."""
    from clamp3.checkpoints import resolve
    from clamp3.config import load_preset

    architecture = load_preset(config.model) if config.model else resolve(config.init_from).config
    audio = architecture.audio.feature_dim if architecture.audio is not None else None
    return ReadRules(architecture.tower("symbolic").strip_default_length, audio)


def file_problem(path: str, rules: ReadRules) -> str | None:
    """Why training could not read ``path`` (an ``.abc``/``.mtf``/``.npy`` file), or None."""
    file = Path(path)
    if not file.is_file():
        return "file does not exist"
    try:
        if modality_of(path) == "symbolic":
            file_patches(file, rules.strip_default_length, load_patchify())
        else:
            load_feature_rows(file, rules.feature_dim)
    except InputError as exc:
        return exc.reason
    except Exception as exc:  # any other failure to read is the file's too (truncated npy...)
        return f"cannot be read ({type(exc).__name__}: {exc})"
    return None


def _problems(files: list[str], rules: ReadRules) -> list[str | None]:
    return [file_problem(f, rules) for f in files]


def find_problems(files: list[str], rules: ReadRules, workers: int) -> list[str | None]:
    """:func:`file_problem` of every file, in order, with ``workers`` forked processes
    (:func:`clamp3.utils.workers.run_isolated`). Files go in chunks of :data:`CHUNK` (one call
    per file costs more than checking it); a file that kills its worker is checked again alone,
    so only it is reported as bad."""
    check = functools.partial(_problems, rules=rules)
    if workers <= 1 or len(files) < SERIAL_BELOW:
        return check(files)
    chunks = [files[i : i + CHUNK] for i in range(0, len(files), CHUNK)]
    problems: list[str | None] = [None] * len(files)
    retry: list[int] = []
    for outcome in run_isolated(check, chunks, workers, initializer=ignore_stop_signals):
        start = outcome.index * CHUNK
        if outcome.ok:
            problems[start : start + CHUNK] = outcome.value
        else:
            retry.extend(range(start, start + len(chunks[outcome.index])))
    alone = [[files[i]] for i in retry]
    for outcome in run_isolated(check, alone, workers, initializer=ignore_stop_signals):
        problems[retry[outcome.index]] = (
            outcome.value[0] if outcome.ok else f"cannot be read ({outcome.error})"
        )
    return problems


@dataclass(frozen=True)
class DataSource:
    """One configured data path of one modality: an M4-RAG JSONL (``pairs``) or an M3 file
    listing (``files``: a folder, a ``.txt`` list or a JSONL)."""

    path: str
    modality: str
    kind: str

    def files(self) -> dict[str, list[str]]:
        """{absolute file path: ids of the records listing it} for every file of the modality."""
        if self.kind == "files":
            return {os.path.abspath(f): [] for f in list_symbolic_files(self.path, check_files=False)}
        base = Path(self.path).parent
        out: dict[str, list[str]] = {}
        for record in records_for(load_records(self.path, check_files=False), self.modality):
            for p in record["filepaths"]:
                out.setdefault(os.path.abspath(resolve_file(base, p)), []).append(str(record["id"]))
        return out

    def key(self, rules: ReadRules) -> dict[str, Any]:
        """What the cached result depends on (JSON-comparable)."""
        path = Path(self.path)
        if path.is_dir():
            digest = hashlib.sha256()
            for f in walk_files(path).files:  # what list_symbolic_files can see
                st = f.stat()
                digest.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
            stamp: Any = digest.hexdigest()
        else:
            st = path.stat()
            stamp = [st.st_size, st.st_mtime_ns]
        where = {"path": os.path.abspath(path), "modality": self.modality, "kind": self.kind}
        return {**where, "stamp": stamp, "rules": asdict(rules)}


def data_sources(config: TrainConfig) -> list[DataSource]:
    """Every distinct data path the run's stages read, in stage order."""
    found: list[DataSource] = []
    for stage in config.stages:
        kind = "files" if stage.task == "m3" else "pairs"
        for paths in (config.train_data, config.eval_data):
            if paths.get(stage.modality):
                source = DataSource(paths[stage.modality], stage.modality, kind)
                if source not in found:
                    found.append(source)
    return found


def check_source(source: DataSource, rules: ReadRules, env: DistEnv, workers: int) -> dict[str, Any]:
    """Check a source's files (every rank its slice); the result as cached: ``files`` checked,
    ``seconds``, ``bad`` = [{file, records, reason}] in file order."""
    started = time.perf_counter()
    files = source.files()
    mine = shard(list(files), env.rank, env.world_size)
    local = {f: p for f, p in zip(mine, find_problems(mine, rules, workers)) if p is not None}
    problems: dict[str, str] = {}
    for part in all_gather_objects(local):
        problems.update(part)
    bad = [{"file": f, "records": ids, "reason": problems[f]} for f, ids in files.items() if f in problems]
    return {"files": len(files), "seconds": round(time.perf_counter() - started, 3), "bad": bad}


def _read_cache(run_dir: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads((run_dir / CACHE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return data.get("sources", []) if data.get("format") == CACHE_FORMAT else []


def _report(source: DataSource, entry: dict[str, Any], cached: bool, run_dir: Path) -> None:
    n, bad = entry["files"], len(entry["bad"])
    where = f" (skipped; listed in {run_dir / BAD_ITEMS_FILE})" if bad else ""
    if cached:
        message = "data check of %s (%s): the earlier result reused: %d files, %d bad%s"
        log.info(message, source.path, source.modality, n, bad, where)
        return
    seconds = entry["seconds"]
    rate = f" ({n / seconds:.0f} files/s)" if seconds >= 0.1 else ""
    message = "data check of %s (%s): %d files in %.1f s%s: %d bad%s"
    log.info(message, source.path, source.modality, n, seconds, rate, bad, where)


def _write_outputs(run_dir: Path, sources: list[DataSource], entries: list[dict[str, Any]]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / CACHE_FILE, {"format": CACHE_FORMAT, "sources": entries})
    lines = [
        json_text({"data": s.path, "modality": s.modality, **bad})
        for s, entry in zip(sources, entries)
        for bad in entry["bad"]
    ]
    write_text_atomic(run_dir / BAD_ITEMS_FILE, "".join(line + "\n" for line in lines))


def screen_data(config: TrainConfig, env: DistEnv) -> dict[str, str]:
    """Check every file the run's stages read; return {absolute path: reason} of the bad ones.

    Writes ``RUN/data_check.json`` and ``RUN/bad_items.jsonl`` (rank 0) and reports each
    source on the terminal. Raises :class:`InputError` naming the first bad file when the
    config says ``"bad_items": "fail"``. Every rank must call it (the check is shared out).
    """
    run_dir = Path(config.output_dir)
    rules = read_rules(config)
    sources = data_sources(config)
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    workers = max(1, (os.cpu_count() or 1) // max(1, local_ranks))
    # Rank 0 alone decides what is cached: ranks on other nodes may see other file times.
    keys = [s.key(rules) for s in sources] if env.is_main else [None] * len(sources)
    cached = None
    if env.is_main:
        earlier = {json_text(e["key"]): e for e in _read_cache(run_dir)}
        cached = [earlier.get(json_text(k)) for k in keys]
    cached = broadcast_object(cached)
    entries = []
    for source, key, hit in zip(sources, keys, cached):
        entry = hit or {"key": key, **check_source(source, rules, env, workers)}
        if env.is_main:
            _report(source, entry, hit is not None, run_dir)
        entries.append(entry)
    if env.is_main:
        _write_outputs(run_dir, sources, entries)
    barrier()
    bad = {b["file"]: b["reason"] for entry in entries for b in entry["bad"]}
    if bad and config.bad_items == "fail":
        first = next(b for entry in entries for b in entry["bad"])
        raise InputError(
            first["file"],
            f"{first['reason']} ({len(bad)} bad file(s) in all, listed in {run_dir / BAD_ITEMS_FILE}; "
            'with "bad_items": "skip" training leaves them out)',
        )
    return bad

"""From built pieces to datasets: texts, splits, M4-RAG JSONL, evaluation folders, manifest.

Layout under ``OUT`` (all paths inside JSONL records are relative to ``OUT``)::

    pieces/<id>/score.musicxml score.abc score.mid score.mtf audio.wav [audio.npy] facts.json
    pieces/<id>/transposed/<key>/score.abc score.mtf facts.json   training copies (``transpose``)
    m4rag_train.jsonl m4rag_validation.jsonl m4rag_test.jsonl   one record per piece (and,
        in the training file, one per transposed copy: filepaths ABC and MTF, no media)
        (filepaths: score.abc, score.mtf [, audio.npy]; media: score.musicxml, score.mid, audio.wav)
    splits.json          ids per split and how they were drawn
    eval/<split>/sheet/<id>.abc  midi/<id>.mtf  audio/<id>.wav  [audio_features/<id>.npy]
    eval/<split>/text_<lang>/<id>.txt   the description in that language, one line, named the way
                         the training texts are (untitled with ``train_titles=False``)
    manifest.json        options, counts, tools and versions, build time
    errors.jsonl         one line per piece that failed (``clamp3.utils.errorlog``: path, reason,
                         time, then id, number, stage, message, trace)

The split of a piece depends only on a hash of its group (variants of one chorale share a
group), so it never changes when the corpus grows or is rebuilt.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from clamp3.corpus.select import stable_hash
from clamp3.corpus.textfix import find_unclean
from clamp3.corpus.texts import LANGUAGES, all_texts
from clamp3.corpus.transpose import read_transposed
from clamp3.utils.errorlog import ERRORS_NAME
from clamp3.utils.errors import InputError
from clamp3.utils.io import write_json_atomic, write_text_atomic

PIECES_DIR = "pieces"
FILES = {
    "musicxml": "score.musicxml",
    "abc": "score.abc",
    "midi": "score.mid",
    "mtf": "score.mtf",
    "wav": "audio.wav",
    "npy": "audio.npy",
    "facts": "facts.json",
}
TRAINING_FILES = ("abc", "mtf", "npy")  # what the training loader reads from ``filepaths``
MEDIA_FILES = ("musicxml", "midi", "wav")
SPLITS = ("train", "validation", "test")
SPLIT_FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}
TEXT_FIELDS = ("title", "genres", "tags", "description", "analysis", "background")
EVAL_FOLDERS = {"abc": "sheet", "mtf": "midi", "wav": "audio", "npy": "audio_features"}


def split_of(group: str, fractions: dict[str, float] = SPLIT_FRACTIONS) -> str:
    """``train``, ``validation`` or ``test`` for a piece group, from a stable hash."""
    point = (stable_hash("split|" + group) % 10_000) / 10_000
    edge = 0.0
    for name in SPLITS:
        edge += fractions[name]
        if point < edge:
            return name
    return SPLITS[-1]


def translation_language(piece_id: str, languages: tuple[str, ...] = LANGUAGES) -> str:
    """The language of a record's ``translations`` (M4-RAG keeps one translation per item):
    the non-English languages in turn, by a hash of the id."""
    others = [lang for lang in languages if lang != "en"]
    return others[stable_hash("translation|" + piece_id) % len(others)]


def make_record(
    facts: dict[str, Any], texts: dict[str, dict[str, Any]], files: dict[str, str]
) -> dict[str, Any]:
    """One M4-RAG-style record.

    ``filepaths`` lists the training inputs the loader accepts (interleaved ABC, MTF, audio
    features); the other renderings (MusicXML, MIDI, WAV) are in ``media``. Text fields are
    English; ``translations`` holds one other language; untitled texts (``write_texts(...,
    titled=False)``) give a record without ``title``; ``texts`` (every language), ``media``
    and ``facts`` are objects, which the official text sampling ignores (it reads only string
    and list fields).
    """
    en = texts["en"]
    other = texts[translation_language(facts["id"], tuple(texts))]
    record: dict[str, Any] = {
        "id": facts["id"],
        "filepaths": [files[kind] for kind in TRAINING_FILES if kind in files],
        "language": "en",
        **({"title": en["title"]} if "title" in en else {}),
        "artists": [facts["composer"]] if facts.get("composer") else [],
        "genres": en["genres"],
        "tags": en["tags"],
        "background": en["background"],
        "analysis": en["analysis"],
        "description": en["description"],
        "translations": {"language": other["language"], **{k: other[k] for k in TEXT_FIELDS if k != "title"}},
        "texts": {lang: {k: t[k] for k in TEXT_FIELDS if k in t} for lang, t in texts.items()},
        "media": {kind: files[kind] for kind in MEDIA_FILES if kind in files},
        "facts": {k: v for k, v in facts.items() if k != "id"},
    }
    return record


def _piece_files(out: Path, piece_id: str) -> dict[str, str]:
    files = {}
    for kind in (*TRAINING_FILES, *MEDIA_FILES):
        if (out / PIECES_DIR / piece_id / FILES[kind]).is_file():
            files[kind] = f"{PIECES_DIR}/{piece_id}/{FILES[kind]}"
    return files


def assemble(
    out: str | os.PathLike,
    piece_ids: list[str],
    options: Any,
    languages: tuple[str, ...] = LANGUAGES,
    timing: dict[str, Any] | None = None,
) -> dict[str, int]:
    """Write JSONL, ``splits.json``, ``eval/`` and ``manifest.json`` for ``piece_ids``
    (already built); returns the number of pieces per split. Every file is replaced
    atomically; ``eval/`` is rebuilt beside the old one and swapped in.

    Raises :class:`InputError` for an empty ``piece_ids`` and leaves the folder's datasets as
    they were: an empty corpus is never what was asked for, and replacing a good one with it
    would lose the old evaluation folders.
    """
    out = Path(out)
    if not piece_ids:
        raise InputError(
            out,
            f"no piece was built: every candidate failed, now or in an earlier run (see {out / ERRORS_NAME}; "
            "--retry-failed tries logged pieces again)",
        )
    by_split: dict[str, list[dict[str, Any]]] = {name: [] for name in SPLITS}
    copies: list[dict[str, Any]] = []  # transposed training copies: m4rag_train.jsonl only
    queries: dict[str, dict[str, str]] = {}  # piece id -> language -> the eval/ query text
    train_titles = getattr(options, "train_titles", True)
    for piece_id in piece_ids:
        facts = json.loads((out / PIECES_DIR / piece_id / FILES["facts"]).read_text(encoding="utf-8"))
        facts["split"] = split_of(facts["group"])
        # Held-out records keep their titles (search results and examples show them); their
        # queries are written as the training texts are, so a model trained without titles is
        # not asked with a name that neither its training nor the music ever showed it.
        titled = train_titles or facts["split"] != "train"
        record = _checked_record(facts, _piece_files(out, piece_id), languages, titled)
        asked = record["texts"]
        if titled != train_titles:  # a held-out piece of an untitled corpus: its queries say "the piece"
            asked = _checked(facts, all_texts(facts, languages, train_titles))
        queries[piece_id] = {lang: texts["description"] for lang, texts in asked.items()}
        by_split[facts["split"]].append(record)
        if facts["split"] == "train":
            for copy, files in read_transposed(out / PIECES_DIR / piece_id, facts):
                files = {kind: f"{PIECES_DIR}/{piece_id}/{path}" for kind, path in files.items()}
                copies.append(_checked_record({**copy, "split": "train"}, files, languages, titled))
    for name, records in by_split.items():
        records = records + (copies if name == "train" else [])
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        write_text_atomic(out / f"m4rag_{name}.jsonl", lines)
    write_json_atomic(
        out / "splits.json",
        {
            "method": "sha1 of the piece group ('split|<group>'), first 8 bytes mod 10000, cut at the fractions",
            "fractions": SPLIT_FRACTIONS,
            **{name: [r["id"] for r in records] for name, records in by_split.items()},
        },
    )
    _write_eval(out, by_split, queries, languages)
    counts = {name: len(records) for name, records in by_split.items()}
    _write_manifest(out, by_split, options, languages, timing, len(copies))
    return counts


def _checked_record(
    facts: dict[str, Any], files: dict[str, str], languages: tuple[str, ...], titled: bool = True
) -> dict:
    record = make_record(facts, all_texts(facts, languages, titled), files)
    return _checked(facts, record)


def _checked(facts: dict[str, Any], value: Any) -> Any:
    """``value`` (a record or texts of the piece ``facts``), or ValueError when a string in it
    holds control or replacement characters."""
    unclean = find_unclean(value)
    if unclean:  # facts are checked when built; this guards the templates and older corpora
        raise ValueError(
            f"{facts['id']}: text with control or replacement characters: {unclean[0]} (a corpus built "
            "before the code-page repair: build it again in a new folder)"
        )
    return value


def read_splits(corpus: str | os.PathLike) -> dict[str, list[str]]:
    """``{split: [piece id, ...]}`` from a built corpus's ``splits.json``, every split of
    :data:`SPLITS` present (empty when the file lacks it). Raises :class:`InputError` naming the
    folder when it holds no readable ``splits.json``."""
    path = Path(corpus) / "splits.json"
    try:
        splits = json.loads(path.read_text(encoding="utf-8"))
        return {name: [str(i) for i in splits.get(name, [])] for name in SPLITS}
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        reason = f"not a corpus made by clamp3 build-corpus (no readable splits.json: {exc})"
        raise InputError(corpus, reason) from exc


def corpus_piece_ids(corpus: str | os.PathLike) -> set[str]:
    """The ids of every piece a built corpus holds (all splits; :func:`read_splits`)."""
    return {piece for ids in read_splits(corpus).values() for piece in ids}


def _link(src: Path, dst: Path) -> None:
    """Hard link (no copy of the audio), or a copy where links are not possible."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _write_eval(
    out: Path,
    by_split: dict[str, list[dict[str, Any]]],
    queries: dict[str, dict[str, str]],
    languages: tuple[str, ...],
) -> None:
    """Mirrored folders per split whose files share the piece id as name, so the evaluation
    pairs a query with its target by file name (the official eval keys on the name);
    ``queries[id][lang]`` is the text of ``text_<lang>/<id>.txt``."""
    staging = out / f".eval.{uuid.uuid4().hex[:8]}.tmp"
    staging.mkdir()  # exists even when every split is empty, so the swap below cannot fail
    for split, records in by_split.items():
        for record in records:
            for kind, folder in EVAL_FOLDERS.items():
                src = out / PIECES_DIR / record["id"] / FILES[kind]
                if src.is_file():
                    target = staging / split / folder / f"{record['id']}{src.suffix}"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    _link(src, target)
            for lang in languages:
                target = staging / split / f"text_{lang}" / f"{record['id']}.txt"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(queries[record["id"]][lang] + "\n", encoding="utf-8")
    old = out / f".eval.{uuid.uuid4().hex[:8]}.old"
    if (out / "eval").exists():
        os.replace(out / "eval", old)
    os.replace(staging, out / "eval")
    shutil.rmtree(old, ignore_errors=True)


def _tool_versions() -> dict[str, Any]:
    import subprocess

    import music21

    from clamp3.corpus.render import find_fluidsynth, find_soundfont

    versions: dict[str, Any] = {"music21": music21.__version__, "fluidsynth": None}
    binary = find_fluidsynth()
    if binary:
        done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
        versions["fluidsynth"] = (done.stdout.splitlines() or [""])[0].strip()
    soundfont = find_soundfont()
    versions["soundfont"] = str(soundfont) if soundfont else None
    return versions


def _write_manifest(
    out: Path,
    by_split: dict[str, list[dict[str, Any]]],
    options: Any,
    languages: tuple[str, ...],
    timing: dict[str, Any] | None,
    copies: int = 0,
) -> None:
    records = [r for records in by_split.values() for r in records]
    synths = Counter((r["facts"].get("audio") or {}).get("synth", "none") for r in records)
    write_json_atomic(
        out / "manifest.json",
        {
            "format": "clamp3-corpus/1",
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "pieces": len(records),
            "splits": {name: len(rs) for name, rs in by_split.items()},
            "transposed_copies": copies,
            "collections": dict(Counter(r["facts"]["collection"] for r in records)),
            "languages": list(languages),
            "options": {
                **{
                    k: getattr(options, k, 0)
                    for k in ("seconds_max", "audio", "synth", "features", "transpose")
                },
                "train_titles": getattr(options, "train_titles", True),
            },
            "synthesizers": dict(synths),
            "audio_seconds": round(
                sum((r["facts"].get("audio") or {}).get("seconds", 0) for r in records), 1
            ),
            "last_run": timing,
            "tools": _tool_versions(),
            "texts": "template-generated from metadata and score analysis (clamp3.corpus.texts), not human-written",
        },
    )

"""Building a small corpus end to end: layout, JSONL records, splits, resume, bad pieces, audio."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("music21")
pytest.importorskip("abctoolkit")
sf = pytest.importorskip("soundfile")

from clamp3.corpus import BuildOptions, PieceRef, build_corpus  # noqa: E402
from clamp3.corpus.assemble import split_of  # noqa: E402
from clamp3.corpus.texts import LANGUAGES  # noqa: E402
from clamp3.utils.errorlog import read_errors  # noqa: E402
from clamp3.utils.io import read_jsonl  # noqa: E402

GOOD = [
    PieceRef(
        "essenFolksong-erk20-64", "essenFolksong/erk20.abc", 64, "essen", "essen:ich hoert ein sichlein"
    ),
    PieceRef("oneills1850-1376-1475-1451", "oneills1850/1376-1475.abc", 1451, "oneills", "oneills:limerick"),
    PieceRef("bach-bwv66_6", "bach/bwv66.6.mxl", None, "bach", "bach:bach/bwv66.6"),
    PieceRef("ryansMammoth-DandyMikesReel-1", "ryansMammoth/DandyMikesReel.abc", 1, "ryans", "ryans:dandy"),
]
BAD = PieceRef("essenFolksong-erk20-99999", "essenFolksong/erk20.abc", 99999, "essen", "essen:missing")
SPLITS = ("train", "validation", "test")
REQUIRED = ("id", "filepaths", "language", "translations", "title", "artists", "genres", "tags")
REQUIRED += ("description", "analysis", "background", "texts")


@pytest.fixture(scope="module")
def symbolic_corpus(tmp_path_factory):
    """Four good pieces and one bad one (first in line), without audio, two workers."""
    out = tmp_path_factory.mktemp("corpus") / "c"
    summary = build_corpus(
        out,
        pieces=4,
        workers=2,
        options=BuildOptions(audio=False),
        candidates=[BAD, *GOOD],
        show_progress=False,
    )
    return out, summary


def _records(out: Path) -> dict[str, list[dict]]:
    return {split: read_jsonl(out / f"m4rag_{split}.jsonl") for split in SPLITS}


def test_layout_without_audio(symbolic_corpus):
    out, summary = symbolic_corpus
    assert summary.built == [ref.id for ref in GOOD]
    for ref in GOOD:
        folder = out / "pieces" / ref.id
        for name in ("score.musicxml", "score.abc", "score.mid", "score.mtf", "facts.json"):
            assert (folder / name).stat().st_size > 0, (ref.id, name)
        assert not (folder / "audio.wav").exists()
        abc = (folder / "score.abc").read_text(encoding="utf-8")
        assert abc.startswith("%%score") or "\nK:" in abc
        assert "[V:1]" in abc  # interleaved: one line per bar with every voice
        assert (folder / "score.mtf").read_text(encoding="utf-8").startswith("ticks_per_beat ")
    assert not list(out.rglob("*.tmp*"))  # no temporary files left behind
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["pieces"] == 4 and manifest["languages"] == list(LANGUAGES)
    assert "template-generated" in manifest["texts"]


def test_every_record_has_the_fields_and_languages(symbolic_corpus):
    out, _ = symbolic_corpus
    records = [r for rs in _records(out).values() for r in rs]
    assert sorted(r["id"] for r in records) == sorted(ref.id for ref in GOOD)
    for record in records:
        assert set(REQUIRED) <= set(record), record["id"]
        assert record["language"] == "en"
        assert [Path(p).suffix for p in record["filepaths"]] == [".abc", ".mtf"]
        assert all((out / p).is_file() for p in record["filepaths"])
        assert set(record["media"]) == {"musicxml", "midi"}  # no audio in this build
        translation = record["translations"]
        assert translation["language"] in set(LANGUAGES) - {"en"}
        assert all(translation[k] for k in ("description", "analysis", "background", "tags", "genres"))
        assert set(record["texts"]) == set(LANGUAGES)
        for lang, texts in record["texts"].items():
            assert all(
                texts[k] for k in ("title", "genres", "tags", "description", "analysis", "background")
            ), lang
        # text sampling reads every str/list field: none of them may be a path or a bookkeeping value
        for key, value in record.items():
            if key not in ("id", "filepaths", "language", "translations") and isinstance(value, str):
                assert "/" not in value or " " in value, key
    bach = next(r for r in records if r["id"] == "bach-bwv66_6")
    assert bach["artists"] == ["Johann Sebastian Bach"] and "F-sharp minor" in bach["analysis"]


def test_eval_folders_mirror_each_split(symbolic_corpus):
    out, _ = symbolic_corpus
    for split, records in _records(out).items():
        ids = sorted(r["id"] for r in records)
        folder = out / "eval" / split
        if not ids:
            continue
        assert sorted(p.stem for p in (folder / "sheet").iterdir()) == ids
        assert sorted(p.stem for p in (folder / "midi").iterdir()) == ids
        for lang in LANGUAGES:
            texts = sorted((folder / f"text_{lang}").iterdir())
            assert [p.stem for p in texts] == ids
            assert all(len(p.read_text(encoding="utf-8").splitlines()) == 1 for p in texts)
        assert not (folder / "audio").exists()


def test_bad_piece_is_logged_and_replaced(symbolic_corpus):
    out, summary = symbolic_corpus
    errors = read_errors(out / "errors.jsonl")  # the one errors.jsonl format: path, reason, time + extra
    assert [(e.path, e.extra["id"]) for e in errors] == [(BAD.source, BAD.id)]
    assert errors[0].extra["stage"] == "parse" and "99999" in errors[0].reason
    assert BAD.id in errors[0].extra["message"] and BAD.source in errors[0].extra["message"]
    assert [e["id"] for e in summary.failed] == [BAD.id]
    assert len(summary.built) == 4  # the next candidate took the bad piece's place
    assert not (out / "pieces" / BAD.id / "facts.json").exists()


def test_splits_are_deterministic_and_disjoint(symbolic_corpus, tmp_path):
    out, summary = symbolic_corpus
    splits = json.loads((out / "splits.json").read_text(encoding="utf-8"))
    sets = [set(splits[name]) for name in SPLITS]
    assert sum(len(s) for s in sets) == len(set().union(*sets)) == 4
    assert set().union(*sets) == set(summary.built)
    for ref in GOOD:
        assert ref.id in splits[split_of(ref.group)]
    # another build, other order, one worker: the same split for every piece
    again = build_corpus(
        tmp_path / "again",
        workers=1,
        options=BuildOptions(audio=False),
        candidates=GOOD[::-1],
        show_progress=False,
    )
    other = json.loads((tmp_path / "again" / "splits.json").read_text(encoding="utf-8"))
    assert {name: sorted(other[name]) for name in SPLITS} == {name: sorted(splits[name]) for name in SPLITS}
    assert again.built == [ref.id for ref in GOOD[::-1]]


def test_rerun_skips_finished_pieces_and_resumes_a_partial_one(symbolic_corpus, tmp_path):
    out = tmp_path / "c"
    shutil.copytree(symbolic_corpus[0], out)
    stamps = {p: p.stat().st_mtime_ns for p in (out / "pieces").rglob("score.*")}
    # simulate a kill in the middle of one piece: its last outputs never got written
    partial = out / "pieces" / GOOD[2].id
    (partial / "facts.json").unlink()
    (partial / "score.mtf").unlink()
    summary = build_corpus(
        out,
        pieces=4,
        workers=1,
        options=BuildOptions(audio=False),
        candidates=[BAD, *GOOD],
        show_progress=False,
    )
    assert summary.reused == 3 and summary.failed == []  # the known-bad piece is not retried
    assert summary.built == [ref.id for ref in GOOD]
    assert (partial / "score.mtf").is_file() and (partial / "facts.json").is_file()
    changed = [p for p, t in stamps.items() if p.name != "score.mtf" or p.parent != partial]
    assert [p for p in changed if p.stat().st_mtime_ns != stamps[p]] == []  # nothing produced was rewritten
    facts = json.loads((partial / "facts.json").read_text(encoding="utf-8"))
    assert facts["seconds"] > 10 and facts["title"] == "BWV 66.6"


def test_a_rerun_without_pieces_says_it_builds_every_candidate(symbolic_corpus, tmp_path, caplog):
    out = tmp_path / "c"
    shutil.copytree(symbolic_corpus[0], out)
    options = BuildOptions(audio=False)
    with caplog.at_level("WARNING", logger="clamp3.corpus.build"):
        build_corpus(out, workers=1, options=options, candidates=[BAD, *GOOD], show_progress=False)
    said = [r.getMessage() for r in caplog.records if "without --pieces" in r.getMessage()]
    assert said == [f"{out} holds 4 pieces; without --pieces every candidate is built (5): pass --pieces 4 "
                    "to resume it as it was"]  # fmt: skip
    caplog.clear()
    with caplog.at_level("WARNING", logger="clamp3.corpus.build"):  # asked for: nothing to say
        build_corpus(out, pieces=4, workers=1, options=options, candidates=[BAD, *GOOD], show_progress=False)
    assert not [r for r in caplog.records if "without --pieces" in r.getMessage()]


def test_audio_and_features_are_added_on_rerun(symbolic_corpus, tmp_path):
    out = tmp_path / "c"
    shutil.copytree(symbolic_corpus[0], out)
    scores = {p: p.stat().st_mtime_ns for p in (out / "pieces").rglob("score.*")}
    summary = build_corpus(
        out,
        pieces=4,
        workers=2,
        options=BuildOptions(seconds_max=3.0, features="tiny"),
        candidates=[BAD, *GOOD],
        show_progress=False,
    )
    assert summary.built == [ref.id for ref in GOOD] and summary.reused == 0
    assert all(p.stat().st_mtime_ns == t for p, t in scores.items())  # scores reused, not rebuilt
    for ref in GOOD:
        facts = json.loads((out / "pieces" / ref.id / "facts.json").read_text(encoding="utf-8"))
        audio, rate = sf.read(str(out / "pieces" / ref.id / "audio.wav"), dtype="float32")
        assert rate == 24000 and audio.ndim == 1
        assert len(audio) == round(min(facts["seconds"] + 1.0, 3.0) * 24000)
        assert float((audio**2).mean()) ** 0.5 > 0.01
        assert facts["audio"]["synth"] in ("fluidsynth", "additive")
    records = [r for rs in _records(out).values() for r in rs]
    assert all([Path(p).suffix for p in r["filepaths"]] == [".abc", ".mtf", ".npy"] for r in records)
    assert all(set(r["media"]) == {"musicxml", "midi", "wav"} for r in records)
    import numpy as np

    features = np.load(out / records[0]["filepaths"][2])
    assert features.dtype == np.float32 and features.shape == (1, 32)  # one 5-s window, tiny preset
    split = next(name for name, rs in _records(out).items() if rs)
    assert sorted(p.suffix for p in (out / "eval" / split / "audio").iterdir()) == [".wav"] * len(
        _records(out)[split]
    )
    records_module = pytest.importorskip("clamp3.train.records")
    for name, rows in _records(out).items():
        if rows:
            loaded = records_module.load_records(out / f"m4rag_{name}.jsonl")
            assert len(records_module.records_for(loaded, "audio")) == len(rows)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["options"]["seconds_max"] == 3.0 and sum(manifest["synthesizers"].values()) == 4


def test_jsonl_loads_with_the_training_loader(symbolic_corpus):
    records_module = pytest.importorskip("clamp3.train.records")
    out, _ = symbolic_corpus
    for split in SPLITS:
        if read_jsonl(out / f"m4rag_{split}.jsonl"):
            records = records_module.load_records(out / f"m4rag_{split}.jsonl")
            assert all(len(records_module.records_for([r], "symbolic")[0]["filepaths"]) == 2 for r in records)


def test_cli_builds_a_corpus(tmp_path):
    from clamp3.cli.main import main

    out = tmp_path / "cli"
    assert main(["build-corpus", str(out), "--pieces", "2", "--no-audio", "--workers", "1", "--quiet"]) == 0
    built = sum(len(read_jsonl(out / f"m4rag_{s}.jsonl")) for s in SPLITS)
    assert built == 2 and (out / "manifest.json").is_file()


def test_exclude_leaves_out_another_corpus_s_pieces(symbolic_corpus, tmp_path):
    # An external check: pieces the first corpus never had; the next candidates fill in.
    from clamp3.corpus import corpus_piece_ids

    out, _ = symbolic_corpus
    held = corpus_piece_ids(out)
    assert held == {ref.id for ref in GOOD}
    first_two = {GOOD[0].id, GOOD[1].id}
    other = tmp_path / "other"
    summary = build_corpus(
        other, pieces=2, workers=1, options=BuildOptions(audio=False), candidates=[BAD, *GOOD],
        show_progress=False, exclude=first_two,
    )
    assert summary.built == [GOOD[2].id, GOOD[3].id]
    assert corpus_piece_ids(other) == {GOOD[2].id, GOOD[3].id}
    manifest = json.loads((other / "manifest.json").read_text())
    assert manifest["last_run"]["excluded_ids"] == 2


def test_cli_exclude_names_a_folder_that_is_not_a_corpus(tmp_path, capsys):
    from clamp3.cli.main import main

    (tmp_path / "notes").mkdir()
    code = main(["build-corpus", str(tmp_path / "out"), "--exclude", str(tmp_path / "notes"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "notes" in err and "splits.json" in err
    assert not (tmp_path / "out" / "pieces").exists()
    out = tmp_path / "out"
    code = main(["build-corpus", str(out), "--exclude", str(tmp_path / "." / "out"), "--quiet"])
    assert code == 2 and "names the corpus being built" in capsys.readouterr().err

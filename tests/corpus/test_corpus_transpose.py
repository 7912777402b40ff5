"""Transposed training copies: pitch arithmetic against music21, ABC and MTF moved alike, records."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("music21")
pytest.importorskip("abctoolkit")

from clamp3.corpus import BuildOptions, PieceRef, build_corpus  # noqa: E402
from clamp3.corpus.options import ConfigError  # noqa: E402
from clamp3.corpus.texts import key_phrase, load_templates  # noqa: E402
from clamp3.corpus.transpose import KEYS, between, choose, move_pitch  # noqa: E402
from clamp3.preprocess import abc_to_musicxml  # noqa: E402
from clamp3.utils.io import read_jsonl  # noqa: E402

TRAIN = [  # both groups hash to the training split
    PieceRef("bach-bwv66_6", "bach/bwv66.6.mxl", None, "bach", "bach:bach/bwv66.6"),
    PieceRef("ryansMammoth-DandyMikesReel-1", "ryansMammoth/DandyMikesReel.abc", 1, "ryans", "ryans:dandy"),
]
HELD_OUT = PieceRef(
    "oneills1850-1376-1475-1451", "oneills1850/1376-1475.abc", 1451, "oneills", "oneills:limerick"
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("transposed") / "c"
    build_corpus(
        out, workers=1, options=BuildOptions(audio=False, transpose=2), candidates=[*TRAIN, HELD_OUT],
        show_progress=False,
    )
    return out


def test_move_pitch_spells_and_sounds_as_music21_does():
    from music21 import interval, pitch

    names = ["C4", "F#3", "Bb5", "E", "B3", "Cb4", "G#2", "Eb"]
    for source in KEYS:
        for target in KEYS:
            move = between(source, target)
            assert -5 <= move.semitones <= 6 and move.steps * move.semitones >= 0  # one direction
            generic = move.steps + 1 if move.steps >= 0 else move.steps - 1
            step = interval.intervalFromGenericAndChromatic(generic, move.semitones)
            for name in names:
                expected = pitch.Pitch(name.replace("b", "-") if len(name) > 1 else name).transpose(step)
                got = move_pitch(name, move)
                if abs(expected.alter) <= 2:
                    octave = str(expected.octave) if name[-1].isdigit() else ""
                    assert got == expected.name.replace("-", "b") + octave, (source, target, name)
                else:  # music21 writes the triple accidental; the copy respells it on the next letter
                    assert got[:1] != expected.step and got.count("#") + got.count("b") <= 2
                if name[-1].isdigit():
                    assert pitch.Pitch(got.replace("b", "-") if len(got) > 1 else got).ps == expected.ps


def test_choice_is_stable_distinct_and_never_the_own_key():
    moves = choose("bach-bwv66_6", "A", 5)
    assert moves == choose("bach-bwv66_6", "A", 5)
    assert len({m.key for m in moves}) == 5 and "A" not in {m.key for m in moves}
    assert [m.key for m in choose("other-piece", "A", 5)] != [m.key for m in moves]


def _sounding(musicxml: str) -> list[tuple[float, str]]:
    from music21 import converter

    score = converter.parseData(musicxml, format="musicxml")
    return [(p.ps, p.nameWithOctave) for n in score.flatten().notes for p in n.pitches]


def _mtf_notes(text: str) -> list[int]:
    """Note numbers of the note_on lines with a velocity (``note_on time channel note velocity``)."""
    rows = [line.split() for line in text.splitlines() if line.startswith("note_on ")]
    return [int(row[3]) for row in rows if int(row[4]) > 0 and int(row[2]) != 9]


def test_abc_and_mtf_move_by_the_same_interval_as_the_facts(corpus):
    for ref in TRAIN:
        folder = corpus / "pieces" / ref.id
        facts = json.loads((folder / "facts.json").read_text(encoding="utf-8"))
        assert len(facts["transposed"]) == 2 and facts["transposed_count"] == 2
        original = _sounding(abc_to_musicxml((folder / "score.abc").read_text(encoding="utf-8")))
        notes = _mtf_notes((folder / "score.mtf").read_text(encoding="utf-8"))
        for copy_id in facts["transposed"]:
            copy_dir = folder / "transposed" / copy_id.rsplit("-to", 1)[1]
            copy = json.loads((copy_dir / "facts.json").read_text(encoding="utf-8"))
            semitones = copy["transposition"]["semitones"]
            moved = _sounding(abc_to_musicxml((copy_dir / "score.abc").read_text(encoding="utf-8")))
            assert [ps for ps, _ in moved] == [ps + semitones for ps, _ in original], copy_id
            moved_notes = _mtf_notes((copy_dir / "score.mtf").read_text(encoding="utf-8"))
            assert moved_notes == [n + semitones for n in notes]
            low = min(moved)[1].replace("-", "b")
            assert copy["pitch_low"] == low and copy["key_tonic"] != facts["key_tonic"]
            assert copy["title"] == facts["title"] and copy["meter"] == facts["meter"]


def test_copies_are_training_records_only(corpus):
    train = read_jsonl(corpus / "m4rag_train.jsonl")
    ids = [r["id"] for r in train]
    assert ids[:2] == [ref.id for ref in TRAIN] and len(ids) == 6
    for record in train[2:]:
        assert record["id"].split("-to")[0] in {ref.id for ref in TRAIN}
        assert [p.rsplit(".", 1)[1] for p in record["filepaths"]] == ["abc", "mtf"]
        assert all((corpus / p).is_file() for p in record["filepaths"])
        facts = record["facts"]
        phrase = key_phrase(facts["key_tonic"], facts["key_mode"], load_templates("en"))
        assert phrase in record["description"] + record["analysis"], (record["id"], phrase)
    held = read_jsonl(corpus / "m4rag_validation.jsonl")
    assert [r["id"] for r in held] == [HELD_OUT.id]
    assert not (corpus / "pieces" / HELD_OUT.id / "transposed").exists()
    assert not any("-to" in p.name for p in (corpus / "eval").rglob("*"))
    manifest = json.loads((corpus / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["transposed_copies"] == 4 and manifest["options"]["transpose"] == 2
    assert manifest["pieces"] == 3


def test_more_copies_on_rerun_keep_the_first_ones(corpus, tmp_path):
    import shutil

    again = tmp_path / "c"
    shutil.copytree(corpus, again)
    folder = again / "pieces" / TRAIN[0].id
    before = json.loads((folder / "facts.json").read_text(encoding="utf-8"))["transposed"]
    stamp = {p: p.stat().st_mtime_ns for p in (folder / "transposed").rglob("score.abc")}
    build_corpus(
        again, workers=1, options=BuildOptions(audio=False, transpose=3), candidates=[*TRAIN, HELD_OUT],
        show_progress=False,
    )
    after = json.loads((folder / "facts.json").read_text(encoding="utf-8"))["transposed"]
    assert after[:2] == before and len(after) == 3  # the same stable order, one key added
    assert all(p.stat().st_mtime_ns == t for p, t in stamp.items())
    assert len(read_jsonl(again / "m4rag_train.jsonl")) == 8


def test_a_count_outside_the_eleven_other_keys_is_refused():
    for bad in (-1, 12):
        with pytest.raises(ConfigError, match="transpose"):
            BuildOptions(transpose=bad)


def test_untitled_training_texts_rebuild_no_piece_and_ask_held_out_queries_untitled(corpus, tmp_path):
    import shutil

    from clamp3.corpus.texts import all_texts, corpus_texts

    again = tmp_path / "c"
    shutil.copytree(corpus, again)
    stamp = {p: p.stat().st_mtime_ns for p in (again / "pieces").rglob("score.*")}
    held_out = [again / "eval" / split for split in ("validation", "test")]
    eval_before = {p: p.read_bytes() for d in held_out for p in d.rglob("*.txt")}
    build_corpus(
        again, workers=1, options=BuildOptions(audio=False, transpose=2, train_titles=False),
        candidates=[*TRAIN, HELD_OUT], show_progress=False,
    )
    assert all(p.stat().st_mtime_ns == t for p, t in stamp.items())  # only the assembly ran
    train = read_jsonl(again / "m4rag_train.jsonl")
    assert len(train) == 6
    for record in train:  # originals and copies
        title = record["facts"]["title"]
        skip = ("id", "filepaths", "facts", "media")
        texts = json.dumps({k: v for k, v in record.items() if k not in skip})
        assert "title" not in record and title not in texts, record["id"]
        assert all("title" not in t for t in record["texts"].values())
    held = read_jsonl(again / "m4rag_validation.jsonl")[0]
    assert held["title"] and held["title"] in held["description"]  # records keep it: results show it
    # ... but the queries are asked as the model was taught: untitled, the facts unchanged
    queries = sorted(p for p in (again / "eval" / "validation").rglob("text_*/*.txt"))
    assert eval_before and len(queries) == len([p for p in eval_before if "validation" in p.parts]) == 5
    facts = json.loads((again / "pieces" / held["id"] / "facts.json").read_text(encoding="utf-8"))
    asked = all_texts(facts, titled=False)
    for path in queries:
        before = eval_before[path].decode("utf-8")
        lang = path.parent.name.removeprefix("text_")
        assert path.read_text(encoding="utf-8") == asked[lang]["description"] + "\n" != before
        assert held["texts"][lang]["description"] + "\n" == before  # the titled build asked with the title
    manifest = json.loads((again / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["options"]["train_titles"] is False
    assert not any(TRAIN[0].id.split("-")[1] in t for t in corpus_texts(again))  # the tokenizer's material

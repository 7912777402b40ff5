"""Answer schemas, grounding, language identification, duplicates, language choice and resume state."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from clamp3.curate.annotator import target_language
from clamp3.curate.documents import Passage
from clamp3.curate.quality import (
    answer_language,
    check_grounding,
    duplicate_key,
    extract_facts,
    same_language,
)
from clamp3.curate.schema import (
    ANNOTATION_SCHEMA,
    AnswerError,
    check_annotation_schema,
    parse_answer,
    translation_schema,
    validate_answer,
)
from clamp3.curate.state import RunState
from clamp3.curate.templates import load_prompts
from clamp3.utils.errors import InputError

GOOD = {
    "genres": ["folk", "Folk ", "song"],
    "tags": ["calm"],
    "background": "  Written by Ann in 1901 for a village feast.  ",
    "analysis": "A simple melody in two parts with a refrain.",
    "description": "A calm and melodic folk song with a refrain.",
    "scene": "A summer evening at a village feast with dancing.",
    "extra": "dropped",
}


def test_parse_answer_tolerates_fences_and_prose():
    assert parse_answer('```json\n{"a": 1}\n```') == {"a": 1}
    assert parse_answer('Sure, here it is: {"a": {"b": 2}} Hope this helps.') == {"a": {"b": 2}}
    with pytest.raises(AnswerError, match="not valid JSON"):
        parse_answer('{"genres": ["folk", "tags": [')
    with pytest.raises(AnswerError, match="JSON object"):
        parse_answer("[1, 2]")


def test_validate_answer_cleans_orders_and_rejects():
    cleaned = validate_answer(GOOD, ANNOTATION_SCHEMA)
    assert list(cleaned) == list(ANNOTATION_SCHEMA["properties"])
    assert cleaned["genres"] == ["folk", "song"]
    assert cleaned["background"] == "Written by Ann in 1901 for a village feast."
    missing = {k: v for k, v in GOOD.items() if k != "scene"}
    with pytest.raises(AnswerError, match="'scene' is a required property"):
        validate_answer(missing, ANNOTATION_SCHEMA)
    with pytest.raises(AnswerError, match="tags"):
        validate_answer({**GOOD, "tags": "calm"}, ANNOTATION_SCHEMA)


def test_schema_checks_and_translation_schema():
    with pytest.raises(ValueError, match="reserved"):
        check_annotation_schema({"type": "object", "properties": {"title": {"type": "string"}}})
    with pytest.raises(ValueError, match="string or an array of strings"):
        check_annotation_schema({"type": "object", "properties": {"year": {"type": "integer"}}})
    schema = translation_schema(ANNOTATION_SCHEMA, ["title", "background", "tags"])
    assert schema["required"] == ["title", "background", "tags"]
    assert schema["properties"]["tags"]["type"] == "array"
    with pytest.raises(ValueError, match="cannot translate 'lyrics'"):
        translation_schema(ANNOTATION_SCHEMA, ["lyrics"])


def test_prompt_folder_overrides_and_bad_schema(tmp_path):
    builtin = load_prompts()
    (tmp_path / "system.txt").write_text("Be brief.", encoding="utf-8")
    custom = load_prompts(tmp_path)
    assert custom.system == "Be brief." and custom.fingerprint != builtin.fingerprint
    assert custom.annotate.render(metadata=["title: X"], passages=[], schema="{}", language_name="English")
    (tmp_path / "annotation.schema.json").write_text(
        '{"type": "object", "properties": {"n": {"type": "number"}}}'
    )
    with pytest.raises(InputError, match="annotation.schema.json"):
        load_prompts(tmp_path)


def test_facts_skip_sentence_starts_and_find_numbers():
    facts = extract_facts(["The song was recorded in Vienna in 1965. Later it reached number 12.", "Jazz"])
    assert facts.names == {"vienna"}
    assert facts.numbers == {"1965", "12"}
    decade = extract_facts(["It became popular in the 1960s and in the 19th century."])
    assert decade.decades == {"196"} and decade.centuries == {19} and decade.numbers == set()


def test_grounding_rule_numbers_strict_names_by_share():
    meta = "title: Song A\nartists: Ann Berg\nyear: 1901"
    passage = Passage("doc.md", 0, "Song A", "Song A was printed in Graz by the publisher Weber in 1901.")
    other = Passage("other.md", 0, "Other", "Nothing relevant here.")
    good = check_grounding(
        ["It was written by Ann Berg, printed in Graz in 1901 in the 1900s."], meta, [passage, other]
    )
    assert good.grounded and good.support == 1.0 and good.unsupported == []
    assert good.used_passages == ["doc.md#0"]  # Graz is only in the passage
    wrong_year = check_grounding(["It was written by Ann Berg in 1887."], meta, [passage])
    assert not wrong_year.grounded and wrong_year.unsupported == ["1887"]
    names = ["A song by Ann Berg, printed in Graz by Weber, sung in Paris, London and Rome."]
    strict = check_grounding(names, meta, [passage], min_support=0.8)
    assert not strict.grounded and strict.support == pytest.approx(4 / 7, abs=1e-4)
    assert set(strict.unsupported) == {"paris", "london", "rome"}
    assert check_grounding(names, meta, [passage], min_support=0.5).grounded
    accents = check_grounding(["A piece by Antonín Dvořák."], "artists: Antonin Dvorak", [])
    assert accents.grounded and accents.used_passages == []


def test_language_identification_and_equivalents():
    assert (
        answer_language({"a": "Dieses Musikstück ist ruhig und sehr melodisch, und es wird oft gespielt."})
        == "de"
    )
    assert answer_language({"a": "Ce morceau est calme et très mélodieux, souvent joué en concert."}) == "fr"
    assert answer_language({"a": "short", "tags": ["calm", "melodic", "folk"]}) is None
    assert same_language("no", "nn") and same_language("de", "de") and not same_language("de", "nl")


def test_duplicate_key_ignores_case_space_and_accents():
    assert duplicate_key(["A calm  song.", "Café"]) == duplicate_key(["a calm song", "cafe!"])
    assert duplicate_key(["A calm song."]) != duplicate_key(["A calm song, loud."])


def test_target_language_is_stable_and_spread():
    languages = ("de", "fr", "es", "zh")
    chosen = [target_language(f"item{i}", languages) for i in range(400)]
    assert chosen == [target_language(f"item{i}", languages) for i in range(400)]
    counts = Counter(chosen)
    assert set(counts) == set(languages) and min(counts.values()) > 60
    assert target_language("x", ()) is None


def test_run_state_cuts_a_torn_tail_and_rejects_changed_settings(tmp_path):
    state = RunState(tmp_path / "s", {"model": "m", "languages": ["de"]})
    assert state.open() == {}
    state.append({"id": "a", "status": "kept"})
    state.append({"id": "a", "status": "rejected"})  # a second line for an id never wins
    with open(state.path, "a", encoding="utf-8") as handle:
        handle.write('{"id": "b", "sta')  # a kill in the middle of a write
    again = RunState(tmp_path / "s", {"model": "m", "languages": ["de"]})
    assert again.open() == {"a": {"id": "a", "status": "kept"}}
    again.append({"id": "b", "status": "kept"})
    lines = [json.loads(line) for line in state.path.read_text(encoding="utf-8").splitlines()]
    assert [line["id"] for line in lines] == ["a", "a", "b"]
    with pytest.raises(InputError, match=r"languages: \['de'\] -> \['fr'\]"):
        RunState(tmp_path / "s", {"model": "m", "languages": ["fr"]}).open()

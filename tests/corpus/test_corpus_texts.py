"""Template-generated texts: every language complete, deterministic, faithful to the facts, and
template files consistent with the vocabulary the describer can produce."""

from __future__ import annotations

import json
import string
from importlib import resources

import pytest

from clamp3.corpus.texts import (
    LANGUAGES,
    TEXT_FIELDS,
    key_phrase,
    load_templates,
    localize,
    tempo_class,
    write_texts,
)

FACTS = {
    "id": "bach-bwv66_6",
    "source": "bach/bwv66.6.mxl",
    "number": None,
    "collection": "bach",
    "collection_name": "Bach chorales",
    "title": "BWV 66.6",
    "composer": "Johann Sebastian Bach",
    "traditional": False,
    "era": "baroque",
    "region": "germany",
    "place": None,
    "genres": ["chorale"],
    "instruments": ["soprano", "alto", "tenor", "bass"],
    "programs": [52, 52, 52, 52],
    "ensemble": [["soprano", 1], ["alto", 1], ["tenor", 1], ["bass", 1]],
    "default_qpm": 76,
    "key_tonic": "F#",
    "key_mode": "minor",
    "meter": "4/4",
    "meter_changes": False,
    "tempo_qpm": None,
    "tempo_text": None,
    "bars": 10,
    "quarter_length": 36.0,
    "pitch_low": "E2",
    "pitch_high": "E5",
    "ambitus": 36,
    "note_count": 160,
    "parts": 4,
    "texture": "homophonic",
    "rhythm": "quarter",
    "opening": ["C#", "B", "A", "B"],
    "final": "F#",
    "pickup": True,
    "largest_leap": 7,
    "has_lyrics": True,
    "dynamics": [],
    "seconds": 28.4,
}
FOLK = {
    **FACTS,
    "id": "essenFolksong-han1-3",
    "collection": "essen",
    "collection_name": "Essen Folksong Collection",
    "title": "Tian xin shun",
    "composer": None,
    "traditional": True,
    "era": "traditional",
    "region": "china",
    "place": "Shaanxi",
    "genres": ["folk_song"],
    "instruments": ["voice"],
    "ensemble": [["voice", 1]],
    "parts": 1,
    "texture": "monophonic",
    "key_tonic": "Bb",
    "key_mode": "major",
    "pickup": False,
    "has_lyrics": False,
}


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("facts", [FACTS, FOLK], ids=["chorale", "folk"])
def test_every_language_gives_every_field(lang, facts):
    texts = write_texts(facts, lang)
    assert texts["language"] == lang and texts["title"] == facts["title"]
    for field in TEXT_FIELDS:
        assert len(texts[field]) > 40, field
        assert "{" not in texts[field] and "}" not in texts[field]  # no unfilled placeholder
        assert "None" not in texts[field]
    assert texts["genres"] and len(texts["tags"]) >= 5
    assert len(set(texts["tags"])) == len(texts["tags"])
    assert facts["title"] in texts["description"]


def test_texts_state_the_facts():
    en = write_texts(FACTS, "en")
    assert "F-sharp minor" in en["analysis"] and "4/4" in en["analysis"]
    assert "Johann Sebastian Bach" in en["background"]
    assert "soprano, alto, tenor and bass" in en["description"]
    assert "E2" in en["analysis"] and "E5" in en["analysis"]
    folk = write_texts(FOLK, "en")
    assert "traditional" in folk["tags"] and "China" in folk["tags"]
    assert "B-flat major" in folk["tags"]
    assert "Bach" not in " ".join(folk[f] for f in TEXT_FIELDS)


def test_localized_names():
    assert key_phrase("F#", "minor", load_templates("de")) == "fis-Moll"
    assert key_phrase("Bb", "major", load_templates("de")) == "B-Dur"
    assert key_phrase("B", "major", load_templates("de")) == "H-Dur"
    assert key_phrase("F#", "minor", load_templates("fr")) == "fa dièse mineur"
    assert key_phrase("Bb", "major", load_templates("es")) == "si bemol mayor"
    assert key_phrase("Eb", "minor", load_templates("zh")) == "降E小调"
    assert "fis-Moll" in write_texts(FACTS, "de")["analysis"]
    assert "升F小调" in write_texts(FACTS, "zh")["analysis"]


def test_same_facts_same_texts_and_phrasing_varies_between_pieces():
    assert write_texts(FACTS, "fr") == write_texts(FACTS, "fr")
    openings = {
        write_texts({**FACTS, "id": f"piece-{i}"}, "en")["description"].split(".")[0] for i in range(30)
    }
    assert len(openings) >= 3


def test_tempo_is_judged_on_the_beat():
    assert tempo_class(144, "2/2") == "moderate"  # 72 half notes per minute
    assert tempo_class(144, "6/8") == "lively"  # 96 dotted quarters
    assert tempo_class(144, "4/4") == "fast"
    assert tempo_class(50, "3/4") == "slow"


def _placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


@pytest.mark.parametrize("lang", LANGUAGES)
def test_templates_cover_the_vocabulary(lang):
    """Every placeholder a template names is one the code provides, and every genre, instrument,
    era and region the data files can produce has a word in this language."""
    tpl = load_templates(lang)
    known = set(localize(FACTS, tpl))
    for field, slots in tpl["fields"].items():
        for slot in slots:
            for variant in slot:
                assert _placeholders(variant) <= known, (field, variant)
    data = resources.files("clamp3.corpus") / "data"
    collections = json.loads((data / "collections.json").read_text(encoding="utf-8"))
    instruments = json.loads((data / "instruments.json").read_text(encoding="utf-8"))["instruments"]
    genres = {g for spec in collections["collections"].values() for g in spec["genres"]}
    genres |= {k for k in collections["title_genres"] if not k.startswith("_")}
    assert genres <= set(tpl["vocab"]["genre"])
    assert set(instruments) <= set(tpl["vocab"]["instrument"])
    regions = {k for k in collections["regions"] if not k.startswith("_")}
    regions |= {spec["region"] for spec in collections["collections"].values() if spec.get("region")}
    assert regions <= set(tpl["vocab"]["region"])
    eras = {spec["era"] for spec in collections["collections"].values() if spec.get("era")}
    eras |= {c["era"] for key, c in collections["composer_by_path"].items() if not key.startswith("_")}
    assert eras - {"traditional"} <= set(tpl["vocab"]["era"])


ANONYMOUS = {**FACTS, "id": "trecento-x", "title": "Donna gentil", "composer": None, "traditional": False}


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("facts", [FACTS, FOLK, ANONYMOUS], ids=["composer", "traditional", "anonymous"])
def test_untitled_texts_name_no_title_and_state_the_same_facts(lang, facts):
    titled, untitled = write_texts(facts, lang), write_texts(facts, lang, titled=False)
    assert "title" not in untitled and untitled["language"] == lang
    tpl = load_templates(lang)
    for field in TEXT_FIELDS:
        text = untitled[field]
        assert facts["title"] not in text and "{" not in text and "None" not in text, (field, text)
        assert len(text) > 40, field
    for field in ("description", "background"):
        assert facts["title"] in titled[field] and untitled[field] != titled[field]
    assert untitled["analysis"] == titled["analysis"]  # it never names the title
    assert untitled["tags"] == titled["tags"] and untitled["genres"] == titled["genres"]
    key = key_phrase(facts["key_tonic"], facts["key_mode"], tpl)
    assert key in untitled["description"] and key in titled["description"]
    # The composer (or that there is none) is said where the titled sentence said it.
    if facts["composer"]:
        assert facts["composer"] in untitled["description"] and facts["composer"] in untitled["background"]
    assert write_texts(facts, lang, titled=False) == untitled  # deterministic too

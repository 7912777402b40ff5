"""Texts about a piece in several languages, written from its facts by templates.

The texts are template-generated, not human-written: every sentence restates a fact from
:mod:`clamp3.corpus.describe` (metadata or score analysis) with phrasing picked from
``data/templates/<lang>.json``. Each template slot lists variants; a variant is usable when
every ``{placeholder}`` it names has a value (``{if_<flag>}`` placeholders are empty strings
present only when the flag holds), and one usable variant is drawn with a random generator
seeded by the piece id, so the same facts always give the same texts.

Fields per language: ``genres`` and ``tags`` (short lists), ``description``, ``analysis``
and ``background`` (paragraphs), following the M4-RAG field names.
"""

from __future__ import annotations

import json
import os
import random
import re
import string
from collections.abc import Iterable, Iterator
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from clamp3.corpus.select import stable_hash

LANGUAGES = ("en", "de", "fr", "es", "zh")
TEXT_FIELDS = ("description", "analysis", "background")  # the paragraphs; genres and tags are lists
VOICES = {"soprano", "alto", "tenor", "bass", "voice"}
GENERIC_GENRES = {"dance_tune", "piece", "song", "air", "folk_song", "mass"}


@lru_cache(maxsize=8)
def load_templates(lang: str) -> dict[str, Any]:
    """The parsed template file of ``lang`` (one of :data:`LANGUAGES`)."""
    if lang not in LANGUAGES:
        raise ValueError(f"no templates for language {lang!r}; available: {', '.join(LANGUAGES)}")
    path = resources.files("clamp3.corpus") / "data" / "templates" / f"{lang}.json"
    return json.loads(path.read_text(encoding="utf-8"))


def write_texts(facts: dict[str, Any], lang: str, titled: bool = True) -> dict[str, Any]:
    """``{"language", "title", "genres", "tags", "description", "analysis", "background"}``
    for one language; the same ``facts`` always give the same texts.

    ``titled=False``: no ``title`` entry, and the sentences that would name the title say
    "the piece" instead (the templates' ``{if_untitled}`` variants); the facts stated are the
    titled text's (the phrasing of later sentences may differ). Training texts are written
    this way with ``BuildOptions(train_titles=False)``: a title is nothing the music shows,
    and a small model trained on it learns to recognise the training pieces by name instead
    of by their music."""
    tpl = load_templates(lang)
    values = localize(facts, tpl, titled)
    texts: dict[str, Any] = {"language": lang, **({"title": facts["title"]} if titled else {})}
    texts["genres"] = [tpl["vocab"]["genre"][g]["noun"] for g in facts["genres"]]
    texts["tags"] = _tags(facts, values, tpl)
    for field in TEXT_FIELDS:
        rng = random.Random(stable_hash(f"{facts['id']}|{lang}|{field}"))
        sentences = []
        for slot in tpl["fields"][field]:
            usable = [v for v in slot if _fillable(v, values)]
            if usable:
                sentence = rng.choice(usable).format_map(values)
                for pattern, replacement in tpl["fixups"]:  # e.g. French elision: de Arcangelo -> d'Arcangelo
                    sentence = re.sub(pattern, replacement, sentence)
                sentences.append(_capitalize(sentence))
        texts[field] = tpl["sentence_sep"].join(sentences)
    return texts


def all_texts(
    facts: dict[str, Any], languages: Iterable[str] = LANGUAGES, titled: bool = True
) -> dict[str, dict[str, Any]]:
    """:func:`write_texts` for every language, keyed by language code."""
    return {lang: write_texts(facts, lang, titled) for lang in languages}


def _fillable(template: str, values: dict[str, str]) -> bool:
    names = [name for _, name, _, _ in string.Formatter().parse(template) if name]
    return all(values.get(name) is not None for name in names)


def _capitalize(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:]


def join_list(items: list[str], tpl: dict[str, Any]) -> str:
    """``a, b and c`` in the template's language."""
    if len(items) <= 1:
        return "".join(items)
    return tpl["list"]["sep"].join(items[:-1]) + tpl["list"]["last"] + items[-1]


def pitch_word(name: str, tpl: dict[str, Any]) -> str:
    """A pitch name such as ``"F#"`` in the template's language (unknown spellings kept)."""
    return tpl["pitch"].get(name, name)


def key_phrase(tonic: str, mode: str, tpl: dict[str, Any]) -> str:
    word = pitch_word(tonic, tpl)
    if mode in tpl.get("key_tonic_lower", []):
        word = word.lower()  # German writes minor keys in lower case: fis-Moll
    return tpl["key"][mode].format(tonic=word)


def tempo_class(qpm: float, meter: str | None) -> str:
    """slow / moderate / lively / fast, judged on the beat: the dotted quarter in 6/8, 9/8
    and 12/8, the half note in x/2 meters, else the quarter note."""
    beat = qpm
    if meter:
        top, _, bottom = meter.partition("/")
        if bottom == "8" and top.isdigit() and int(top) % 3 == 0 and int(top) > 3:
            beat = qpm / 1.5
        elif bottom == "2":
            beat = qpm / 2
    if beat < 60:
        return "slow"
    if beat < 92:
        return "moderate"
    if beat < 126:
        return "lively"
    return "fast"


def _duration(seconds: float, tpl: dict[str, Any]) -> str:
    total = int(round(seconds))
    if total < 90:
        return tpl["duration"]["seconds"].format(s=total)
    minutes, rest = divmod(total, 60)
    form = "minute" if minutes == 1 else "minutes"
    return tpl["duration"][form].format(m=minutes, s=rest)


def _number(n: int, tpl: dict[str, Any], counting: bool = False) -> str:
    table = tpl.get("count_numbers", {}) if counting else {}
    return table.get(str(n)) or tpl["numbers"].get(str(n)) or str(n)


def ensemble_phrase(ensemble: list[list[Any]], tpl: dict[str, Any]) -> str:
    """``two violins, viola and cello`` from ``[["violin", 2], ["viola", 1], ["cello", 1]]``."""
    words = []
    for name, count in ensemble:
        entry = tpl["vocab"]["instrument"][name]
        words.append(entry["one"] if count == 1 else entry["many"].format(n=_number(count, tpl, True)))
    return join_list(words, tpl)


def main_genre(genres: list[str]) -> str:
    """The most specific genre: a title's dance type over the collection's generic one."""
    specific = [g for g in genres if g not in GENERIC_GENRES]
    return (specific or genres)[-1]


def localize(facts: dict[str, Any], tpl: dict[str, Any], titled: bool = True) -> dict[str, Any]:
    """Placeholder values for the templates of one language; a missing fact is None (so is
    ``title`` when not ``titled``, which leaves only the ``{if_untitled}`` variants fillable)."""
    vocab = tpl["vocab"]
    genre = vocab["genre"][main_genre(facts["genres"])]
    qpm = facts.get("tempo_qpm") or facts["default_qpm"]
    tempo = tempo_class(qpm, facts.get("meter"))
    mode = facts["key_mode"]
    era = vocab["era"].get(facts.get("era") or "")
    region = vocab["region"].get(facts.get("region") or "")
    composer = facts.get("composer")
    flag = {True: "", False: None}
    return {
        "title": tpl["quote"].format(facts["title"]) if titled else None,
        "if_untitled": flag[not titled],
        "composer": composer,
        "traditional": vocab["traditional"] if facts.get("traditional") and not composer else None,
        "if_traditional": flag[bool(facts.get("traditional")) and not composer],
        "if_anonymous": flag[not composer and not facts.get("traditional")],
        "genre": genre["noun"],
        "genre_indef": genre["indef"],
        "collection": tpl["quote"].format(facts["collection_name"]),
        "era": era["tag"] if era else None,
        "era_from": era["from"] if era else None,
        "region": region["name"] if region else None,
        "region_from": region["from"] if region else None,
        "place": facts.get("place") if region else None,
        "ensemble": ensemble_phrase(facts["ensemble"], tpl),
        "parts_word": _number(facts["parts"], tpl) if facts["parts"] > 1 else None,
        "if_solo": flag[facts["parts"] == 1],
        "key": key_phrase(facts["key_tonic"], mode, tpl),
        "meter": facts.get("meter"),
        "if_meter_changes": flag[bool(facts.get("meter_changes"))],
        "tempo_word": vocab["tempo"][tempo],
        "bpm": str(int(round(qpm))),
        "if_tempo_marked": flag[facts.get("tempo_qpm") is not None],
        "if_tempo_unmarked": flag[facts.get("tempo_qpm") is None],
        "if_tempo_text": flag[bool(facts.get("tempo_text"))],
        "tempo_text": tpl["term_quote"].format(facts["tempo_text"]) if facts.get("tempo_text") else None,
        "mood": vocab["mood"][f"{mode}_{'fast' if tempo in ('lively', 'fast') else 'slow'}"],
        "bars": str(facts["bars"]) if facts.get("bars") else None,
        "duration": _duration(facts["seconds"], tpl) if facts.get("seconds") else None,
        "low": facts["pitch_low"],
        "high": facts["pitch_high"],
        "span": str(facts["ambitus"]),
        "texture": vocab["texture"][facts["texture"]]["desc"],
        "rhythm": vocab["rhythm"].get(facts.get("rhythm") or ""),
        "opening": join_list([pitch_word(p, tpl) for p in facts["opening"]], tpl)
        if facts["opening"]
        else None,
        "final": pitch_word(facts["final"], tpl) if facts.get("final") else None,
        "if_pickup": flag[bool(facts.get("pickup"))],
        "leap": str(facts["largest_leap"]) if facts.get("largest_leap") else None,
        "if_lyrics": flag[bool(facts.get("has_lyrics"))],
        "dynamics": join_list(facts["dynamics"], tpl) if facts.get("dynamics") else None,
        "notes": str(facts["note_count"]),
    }


def _tags(facts: dict[str, Any], values: dict[str, Any], tpl: dict[str, Any]) -> list[str]:
    """Short tags: genres, era, tradition, region, instruments, key, meter, tempo, texture."""
    vocab, forms = tpl["vocab"], tpl["tags"]
    tags = [vocab["genre"][g]["noun"] for g in facts["genres"]]
    tags += [values["era"], values["traditional"], values["region"], values["composer"]]
    tags += [vocab["instrument"][name]["one"] for name, _ in facts["ensemble"]]
    is_vocal = all(name in VOICES for name, _ in facts["ensemble"])
    tags.append(vocab["vocal"] if is_vocal else vocab["instrumental"])
    tags.append(forms["key"].format_map(values))
    if values["meter"]:
        tags.append(forms["meter"].format_map(values))
    tags.append(forms["tempo"].format_map(values))
    if facts["parts"] > 1:
        tags.append(forms["parts"].format_map(values))
    tags.append(vocab["texture"][facts["texture"]]["tag"])
    return list(dict.fromkeys(t for t in tags if t))


def corpus_texts(out: str | os.PathLike, splits: Iterable[str] = ("train",)) -> Iterator[str]:
    """Every text of the corpus JSONL of ``splits``, in every language: titles, tags, genres
    and the paragraphs (the material the corpus tokenizer is trained on)."""
    from clamp3.utils.io import read_jsonl

    for split in splits:
        for record in read_jsonl(Path(out) / f"m4rag_{split}.jsonl"):
            for texts in record["texts"].values():
                if "title" in texts:  # untitled training texts have none
                    yield texts["title"]
                yield " ".join(texts["genres"] + texts["tags"])
                yield from (texts[field] for field in TEXT_FIELDS)


def train_corpus_tokenizer(
    out: str | os.PathLike,
    directory: str | os.PathLike,
    vocab_size: int | None = None,
    splits: Iterable[str] = ("train",),
) -> Any:
    """Train the text tokenizer of the ``mini`` model on a built corpus and save it.

    Trains :func:`clamp3.tokenizer.train_tokenizer` (Unigram, XLM-R special-token ids) on the
    texts of ``splits`` (the training split only by default, so the test texts stay unseen),
    writes ``<directory>/tokenizer.json`` and returns the :class:`~clamp3.tokenizer.TextTokenizer`.
    ``vocab_size`` defaults to the ``mini`` preset's text vocabulary; the trained vocabulary can
    be smaller when the texts hold fewer distinct pieces, never larger.
    """
    from clamp3.config import load_preset
    from clamp3.tokenizer import train_tokenizer

    limit = vocab_size or load_preset("mini").tower("text").vocab_size
    texts = list(corpus_texts(out, splits))
    if not texts:
        raise ValueError(f"{out}: no texts in the {', '.join(splits)} split(s); build the corpus first")
    tokenizer = train_tokenizer(texts, limit)
    if tokenizer.vocab_size > limit:
        raise RuntimeError(f"tokenizer has {tokenizer.vocab_size} entries, more than {limit}")
    Path(directory).mkdir(parents=True, exist_ok=True)
    tokenizer.save(directory)
    return tokenizer

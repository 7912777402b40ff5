"""One item through the curation steps: retrieve -> annotate -> ground -> translate -> record.

Several target languages: the official M4-RAG record holds ONE translation (``translations`` is a
single ``{"language": code, field: text, ...}``; ``official-implementation.md`` §3.5/§4.1), so each
item is translated into one language chosen from the configured list by a hash of its id. This
keeps one record per music item — one record per language would put the same music several times
into an epoch and into one contrastive batch, where the copies become false negatives — spreads the
languages evenly over the catalogue, and costs one translation request per item. The choice is a
pure function of the id and the language list, so reruns and resumed runs choose the same language.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clamp3.curate.catalogue import CatalogueItem
from clamp3.curate.documents import Passage
from clamp3.curate.llm import ChatClient
from clamp3.curate.quality import answer_language, check_grounding, same_language
from clamp3.curate.retrieve import Retriever, item_query
from clamp3.curate.schema import AnswerError, field_kind, parse_answer, translation_schema, validate_answer
from clamp3.curate.templates import Prompts
from clamp3.curate.transport import LLMRequestError

# Rejection reasons (the report counts items per reason).
INVALID_ANNOTATION = "invalid_annotation"
ANNOTATION_LANGUAGE = "annotation_language"
UNGROUNDED = "ungrounded"
INVALID_TRANSLATION = "invalid_translation"
TRANSLATION_LANGUAGE = "translation_language"
LLM_REFUSED = "llm_refused"


@dataclass(frozen=True)
class CurateSettings:
    """What decides the content of a record (a resumed run must use the same values).

    ``languages``: translation targets (ISO 639-1); empty = no translation; items assigned the
    source language keep an empty ``translations``. ``source_language``:
    the language the annotations are written in. ``min_support``: the share of names that must be
    grounded (``quality`` module). ``max_attempts``: answers asked per request before rejecting.
    ``retrieval``: ``"bm25"``, ``"dense"`` or ``"hybrid"`` (``retrieve`` module).
    """

    languages: tuple[str, ...] = ()
    translate_fields: tuple[str, ...] = ("background", "analysis", "description", "scene")
    source_language: str = "en"
    top_k: int = 5
    passage_words: int = 200
    min_support: float = 0.8
    max_attempts: int = 3
    temperature: float = 0.0
    retrieval: str = "bm25"


@dataclass
class Outcome:
    """The result of one item; ``record`` is the M4-RAG record when ``status == "kept"``."""

    id: str
    status: str
    reason: str | None = None
    detail: str = ""
    record: dict[str, Any] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)


class _Rejected(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


class _WrongLanguage(AnswerError):
    pass


class _Exhausted(Exception):
    """Every attempt gave an unusable answer; ``error`` is the last one."""

    def __init__(self, error: AnswerError, detected: str | None, attempts: int) -> None:
        super().__init__(str(error))
        self.error, self.detected, self.attempts = error, detected, attempts


def target_language(item_id: str, languages: tuple[str, ...]) -> str | None:
    """The translation language of an item: stable hash of the id modulo the list (``None`` if empty)."""
    if not languages:
        return None
    digest = hashlib.sha256(item_id.encode("utf-8")).digest()
    return languages[int.from_bytes(digest[:8], "big") % len(languages)]


class Annotator:
    """Runs one item at a time; thread-safe (shares only the client, which is)."""

    def __init__(
        self,
        client: ChatClient,
        prompts: Prompts,
        retriever: Retriever,
        settings: CurateSettings,
        output_dir: str | os.PathLike,
    ) -> None:
        self.client = client
        self.prompts = prompts
        self.retriever = retriever
        self.settings = settings
        self.output_dir = Path(output_dir).resolve()
        self.schema = prompts.annotation_schema
        self.translation_schema = translation_schema(self.schema, list(settings.translate_fields))

    def process(self, item: CatalogueItem) -> Outcome:
        """Curate one item. Content problems and refused requests (chat or query embedding)
        become a rejected :class:`Outcome`; transport problems (``BudgetExhausted``,
        ``LLMUnavailable``, ``LLMConfigError``) propagate, so the item stays pending and a later
        run retries it."""
        try:
            hits = self.retriever.search(item_query(item), self.settings.top_k)
        except LLMRequestError as exc:  # the embedding endpoint refused this item's query
            detail = f"query embedding: {exc}"
            return Outcome(item.id, "rejected", LLM_REFUSED, detail, None, {"id": item.id, "passages": []})
        passages = [p for p, _ in hits]
        provenance: dict[str, Any] = {
            "id": item.id,
            "passages": [{"key": p.key, "title": p.title, "score": s} for p, s in hits],
        }
        try:
            annotation = self._annotate(item, passages, provenance)
            language = target_language(item.id, self.settings.languages)
            if language == self.settings.source_language:
                language = None  # the source language in the list = this share stays untranslated
            translation = self._translate(item, annotation, language, provenance) if language else {}
        except _Rejected as exc:
            return Outcome(item.id, "rejected", exc.reason, exc.detail, None, provenance)
        except LLMRequestError as exc:
            return Outcome(item.id, "rejected", LLM_REFUSED, str(exc), None, provenance)
        record = self._record(item, annotation, language, translation)
        return Outcome(item.id, "kept", None, "", record, provenance)

    def _annotate(self, item: CatalogueItem, passages: list[Passage], provenance: dict) -> dict[str, Any]:
        source = self.settings.source_language
        prompt = self.prompts.annotate.render(
            metadata=item.metadata_lines(),
            passages=passages,
            schema=json.dumps(self.schema, ensure_ascii=False),
            language_name=self.prompts.language_name(source),
        )
        try:
            annotation, detected, attempts = self._ask(prompt, self.schema, source)
        except _Exhausted as exc:
            provenance["annotation"] = {"attempts": exc.attempts, "detected_language": exc.detected}
            reason = ANNOTATION_LANGUAGE if isinstance(exc.error, _WrongLanguage) else INVALID_ANNOTATION
            raise _Rejected(reason, str(exc.error)) from None
        provenance["annotation"] = {"attempts": attempts, "detected_language": detected}
        texts = [v for value in annotation.values() for v in (value if isinstance(value, list) else [value])]
        grounding = check_grounding(
            texts, "\n".join(item.metadata_lines()), passages, self.settings.min_support
        )
        provenance["grounding"] = {
            "grounded": grounding.grounded,
            "support": grounding.support,
            "checked": grounding.checked,
            "unsupported": grounding.unsupported,
        }
        used = set(grounding.used_passages)
        for entry in provenance["passages"]:
            entry["used"] = entry["key"] in used
        if not grounding.grounded:
            raise _Rejected(UNGROUNDED, f"unsupported: {', '.join(grounding.unsupported)}")
        return annotation

    def _translate(self, item: CatalogueItem, annotation: dict, language: str, provenance: dict) -> dict:
        fields = {
            name: item.title if name == "title" else annotation[name]
            for name in self.settings.translate_fields
        }
        prompt = self.prompts.translate.render(
            title=item.title,
            fields=json.dumps(fields, ensure_ascii=False, indent=1),
            language=language,
            language_name=self.prompts.language_name(language),
            source_name=self.prompts.language_name(self.settings.source_language),
            schema=json.dumps(self.translation_schema, ensure_ascii=False),
        )
        try:
            translation, detected, attempts = self._ask(prompt, self.translation_schema, language)
        except _Exhausted as exc:
            provenance["translation"] = {
                "language": language,
                "attempts": exc.attempts,
                "detected_language": exc.detected,
            }
            reason = TRANSLATION_LANGUAGE if isinstance(exc.error, _WrongLanguage) else INVALID_TRANSLATION
            raise _Rejected(reason, str(exc.error)) from None
        provenance["translation"] = {
            "language": language,
            "attempts": attempts,
            "detected_language": detected,
        }
        return translation

    def _ask(self, prompt: str, schema: dict, language: str) -> tuple[dict[str, Any], str | None, int]:
        """``(answer, detected languages, attempts used)``; :class:`_Exhausted` after ``max_attempts``.

        An unusable answer (not JSON, schema violation, wrong language) is shown back to the model
        with the reason, so it can correct itself rather than repeat the same answer.
        """
        messages = [{"role": "system", "content": self.prompts.system}, {"role": "user", "content": prompt}]
        detected: str | None = None
        error: AnswerError = AnswerError("no attempt made")
        for attempt in range(1, self.settings.max_attempts + 1):
            reply = self.client.chat(messages, temperature=self.settings.temperature)
            try:
                answer = validate_answer(parse_answer(reply), schema)
                detected = answer_language(answer)
                if detected is not None and not same_language(language, detected):
                    raise _WrongLanguage(f"expected language {language!r}, detected {detected!r}")
                return answer, detected, attempt
            except AnswerError as exc:
                error = exc
            messages = [
                *messages,
                {"role": "assistant", "content": reply},
                {"role": "user", "content": self.prompts.repair.render(error=str(error))},
            ]
        raise _Exhausted(error, detected, self.settings.max_attempts)

    def _record(self, item: CatalogueItem, annotation: dict, language: str | None, translation: dict) -> dict:
        """The M4-RAG record; file paths are made relative to the output's folder (§4.1)."""
        record: dict[str, Any] = {
            "id": item.id,
            "filepaths": [Path(os.path.relpath(p, self.output_dir)).as_posix() for p in item.filepaths],
            "language": self.settings.source_language,
            "title": item.title,
        }
        if item.artists:
            record["artists"] = list(item.artists)
        record.update(annotation)
        record["translations"] = {"language": language, **translation} if language else {}
        return record


def annotation_texts(record: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """The generated texts of a record, in schema order (for duplicate detection)."""
    texts: list[str] = []
    for name, prop in schema["properties"].items():
        value = record.get(name)
        if value is None:
            continue
        texts.extend(value if field_kind(prop) == "list" else [value])
    return texts

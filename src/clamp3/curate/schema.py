"""JSON schemas of the LLM's answers, tolerant parsing and validation (``jsonschema``).

``jsonschema`` (the reference JSON Schema implementation) is used so the answer contract is
plain data: the built-in annotation schema below can be replaced by an ``annotation.schema.json``
in the prompt folder, and the same schema is shown to the model in the prompt.

The annotation fields are M4-RAG's generated texts (``official-implementation.md`` §4.1): short
``genres`` and ``tags`` lists and long ``background``, ``analysis``, ``description`` and ``scene``
texts. Every field must be a string or a list of strings, because that is what the trainer reads
as text (§3.5: all str / list-of-str fields are text candidates).
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

# Fields the output record takes from the catalogue or the pipeline; the LLM may not produce them.
RESERVED_FIELDS = frozenset({"id", "filepaths", "language", "translations", "title", "artists"})

_TEXT = {"type": "string", "minLength": 20}
_LIST = {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1}

ANNOTATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "genres": {**_LIST, "maxItems": 8},
        "tags": {**_LIST, "maxItems": 20},
        "background": _TEXT,
        "analysis": _TEXT,
        "description": _TEXT,
        "scene": _TEXT,
    },
    "required": ["genres", "tags", "background", "analysis", "description", "scene"],
}


class AnswerError(ValueError):
    """An LLM answer that is not usable; ``str`` says why (shown to the model when it retries)."""


def check_annotation_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` if it is a valid object schema whose properties are strings or string lists.

    Raises ``ValueError`` naming the offending property otherwise.
    """
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise ValueError(f"invalid JSON schema: {exc.message}") from exc
    properties = schema.get("properties")
    if schema.get("type") != "object" or not isinstance(properties, dict) or not properties:
        raise ValueError('the annotation schema must be {"type": "object", "properties": {...}}')
    for name, prop in properties.items():
        if name in RESERVED_FIELDS:
            raise ValueError(f"property {name!r} is reserved (it comes from the catalogue or the pipeline)")
        if field_kind(prop) is None:
            raise ValueError(f"property {name!r} must be a string or an array of strings")
    return schema


def field_kind(prop: dict[str, Any]) -> str | None:
    """``"text"``, ``"list"`` or ``None`` (unsupported) for one schema property."""
    if prop.get("type") == "string":
        return "text"
    if prop.get("type") == "array" and prop.get("items", {}).get("type") == "string":
        return "list"
    return None


def translation_schema(annotation_schema: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    """The schema of a translation of ``fields`` (each keeps its annotation type; ``title`` is text)."""
    properties: dict[str, Any] = {}
    for name in fields:
        if name == "title":
            properties[name] = {"type": "string", "minLength": 1}
        elif name in annotation_schema["properties"]:
            prop = copy.deepcopy(annotation_schema["properties"][name])
            prop.pop("minLength", None)  # a translation may be shorter than the source's minimum
            properties[name] = prop
        else:
            raise ValueError(f"cannot translate {name!r}: not an annotation field nor 'title'")
    return {"type": "object", "properties": properties, "required": list(fields)}


def parse_answer(text: str) -> dict[str, Any]:
    """The JSON object in an LLM reply; tolerates Markdown code fences and prose around the object."""
    stripped = re.sub(r"^\s*```(?:json)?\s*|\s*```\s*$", "", text.strip())
    for candidate in (stripped, stripped[stripped.find("{") : stripped.rfind("}") + 1]):
        try:
            value = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
        raise AnswerError(f"expected a JSON object, got {type(value).__name__}")
    raise AnswerError("the answer is not valid JSON")


def validate_answer(answer: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """The answer reduced to the schema's properties, in schema order, cleaned.

    Strings are stripped; list items are stripped and de-duplicated case-insensitively (first
    spelling kept); unknown keys are dropped. Raises :class:`AnswerError` listing up to three
    schema violations (checked after cleaning, so ``"  "`` fails a ``minLength``).
    """
    cleaned: dict[str, Any] = {}
    for name in schema["properties"]:
        if name in answer:
            cleaned[name] = _clean(answer[name])
    errors = sorted(Draft202012Validator(schema).iter_errors(cleaned), key=lambda e: list(e.absolute_path))
    if errors:
        described = [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors[:3]]
        raise AnswerError("; ".join(described))
    return cleaned


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list):
        seen: set[str] = set()
        out = []
        for item in value:
            item = item.strip() if isinstance(item, str) else item
            key = item.casefold() if isinstance(item, str) else json.dumps(item, sort_keys=True)
            if key not in seen:
                seen.add(key)
                out.append(item)
        return out
    return value

"""Prompt templates and the answer schema, loaded from files.

The built-in set lives in ``clamp3/curate/prompts/``. A user folder (``--prompts DIR``) overrides
any of these files and falls back to the built-in one for the others:

========================  =============================================================
``system.txt``            the system message of every request
``annotate.j2``           annotation request; gets ``metadata`` (lines), ``passages``
                          (``title``, ``text``), ``schema`` (JSON text), ``language_name``
``translate.j2``          translation request; gets ``title``, ``fields`` (JSON text),
                          ``language``, ``language_name``, ``source_name``, ``schema``
``repair.j2``             sent after an unusable answer; gets ``error``
``languages.txt``         ``code<TAB>name`` lines naming target languages in prompts
``annotation.schema.json`` optional: replaces the built-in annotation schema
========================  =============================================================

Templates are Jinja2 (already installed with torch) with ``StrictUndefined``, so a misspelt
variable fails at the first render instead of silently producing an empty prompt.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from clamp3.curate.schema import ANNOTATION_SCHEMA, check_annotation_schema
from clamp3.utils.errors import InputError
from clamp3.utils.io import read_text

BUILTIN_DIR = Path(__file__).with_name("prompts")
_FILES = ("system.txt", "annotate.j2", "translate.j2", "repair.j2", "languages.txt")
SCHEMA_FILE = "annotation.schema.json"


@dataclass(frozen=True)
class Prompts:
    """Rendered-on-demand prompts; ``fingerprint`` hashes every file and the schema."""

    system: str
    annotate: jinja2.Template
    translate: jinja2.Template
    repair: jinja2.Template
    language_names: dict[str, str]
    annotation_schema: dict[str, Any]
    fingerprint: str

    def language_name(self, code: str) -> str:
        return self.language_names.get(code, code)


def load_prompts(folder: str | os.PathLike | None = None) -> Prompts:
    """Prompts from ``folder`` with built-in fallbacks; raises :class:`InputError` on a bad file."""
    folder = Path(folder) if folder is not None else None
    if folder is not None and not folder.is_dir():
        raise InputError(folder, "prompt folder not found")
    sources: dict[str, str] = {}
    for name in _FILES:
        path = folder / name if folder is not None and (folder / name).is_file() else BUILTIN_DIR / name
        sources[name] = read_text(path)
    schema = ANNOTATION_SCHEMA
    if folder is not None and (folder / SCHEMA_FILE).is_file():
        try:
            schema = check_annotation_schema(json.loads(read_text(folder / SCHEMA_FILE)))
        except ValueError as exc:  # JSONDecodeError is a ValueError too
            raise InputError(folder / SCHEMA_FILE, str(exc)) from exc
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False
    )
    templates = {}
    for name in ("annotate.j2", "translate.j2", "repair.j2"):
        try:
            templates[name] = env.from_string(sources[name])
        except jinja2.TemplateSyntaxError as exc:
            raise InputError(name, f"template syntax error on line {exc.lineno}: {exc.message}") from exc
    digest = hashlib.sha256(json.dumps([sources, schema], sort_keys=True).encode("utf-8")).hexdigest()
    return Prompts(
        system=sources["system.txt"].strip(),
        annotate=templates["annotate.j2"],
        translate=templates["translate.j2"],
        repair=templates["repair.j2"],
        language_names=_parse_languages(sources["languages.txt"]),
        annotation_schema=schema,
        fingerprint=digest[:16],
    )


def _parse_languages(text: str) -> dict[str, str]:
    names = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            code, _, name = line.partition("\t")
            names[code.strip()] = name.strip() or code.strip()
    return names

"""Every ``clamp3`` command line the README and docs/ show in a shell block parses, and every
``clamp3.x.y`` name they show exists: a user who copies one gets what it says, not a usage
error or an AttributeError (the brief: documented commands keep working). Placeholders parse
as values; ``[--opt X]`` is read as ``--opt X`` and ``a|b`` as ``a``."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from clamp3.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_SHELL_BLOCK = re.compile(r"```(?:bash|sh|shell|console)\n(.*?)```", re.S)


def _command_lines(text: str) -> list[str]:
    """The ``clamp3 ...`` commands of the shell blocks: continuation lines joined, comments,
    pipes and redirections cut, each side of ``&&`` a command of its own."""
    found = []
    for block in _SHELL_BLOCK.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.split(r"\s+#", re.sub(r"^\$ ", "", line.strip()))[0]
            for part in re.split(r"\s+&&\s+", line):
                part = re.split(r"\s+(?:\||;|>|2>)\s+", part)[0].strip()
                if part.startswith("clamp3 "):
                    found.append(part)
    return found


def _words(command: str) -> list[str]:
    optional = command.replace("[", " ").replace("]", " ")
    return [word.split("|")[0] for word in shlex.split(optional)[1:]]


CASES = [(doc.name, line) for doc in DOCUMENTS for line in _command_lines(doc.read_text(encoding="utf-8"))]


def test_the_documents_show_commands():
    assert len(CASES) > 50 and {"README.md", "onnx.md", "serve.md"} <= {name for name, _ in CASES}


@pytest.mark.parametrize("document,command", CASES, ids=[f"{d}: {c[:60]}" for d, c in CASES])
def test_a_documented_command_parses(document, command):
    words = _words(command)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            build_parser(words[0]).parse_args(words)
    except SystemExit as exc:
        assert not exc.code, f"{document}: {command}\n{err.getvalue()}"


def _references(doc: Path) -> list[str]:
    """The ``clamp3.x.y`` names a document shows in code spans; the README's "Changed" section
    names what is gone on purpose and is left out."""
    text = doc.read_text(encoding="utf-8")
    if doc.name == "README.md":
        text = re.sub(r"\n## Changed\n.*?(?=\n## )", "\n", text, flags=re.S)
    return sorted(set(re.findall(r"`(clamp3(?:\.[A-Za-z_]\w*)+)", text)))


REFERENCES = [(doc.name, name) for doc in DOCUMENTS for name in _references(doc)]


@pytest.mark.parametrize("document,name", REFERENCES, ids=[f"{d}: {n}" for d, n in REFERENCES])
def test_a_documented_name_exists(document, name):
    import importlib

    parts = name.split(".")
    for split in range(len(parts), 0, -1):  # the longest importable module, then attributes
        try:
            found = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            assert hasattr(found, attribute), f"{document}: {name}: no {attribute!r} in {found!r}"
            found = getattr(found, attribute)
        return

"""The document source, cut into passages for retrieval.

A source is either a folder (searched recursively) of ``.txt``, ``.md``/``.markdown`` and
``.html``/``.htm`` files — the document id is the path relative to the folder — or a JSONL dump with
one ``{"id", "title", "text"}`` object per line (e.g. a Wikipedia extract). HTML is turned into text
with the standard library's ``html.parser`` (no extra dependency): scripts and styles are dropped
and block elements become paragraph breaks.

Passages: paragraphs (blank-line separated) are packed greedily up to ``passage_words`` words; a
longer paragraph is split at sentence ends, and a longer sentence at word boundaries. Passage
boundaries depend only on the text, so rebuilding the index gives the same passages.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from clamp3.utils.errors import InputError
from clamp3.utils.io import decode_text, jsonl_objects, read_bytes, read_text
from clamp3.utils.walk import walk_files

TEXT_SUFFIXES = (".txt", ".md", ".markdown")
HTML_SUFFIXES = (".html", ".htm")

_BLOCK_TAGS = {
    "p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table",
    "section", "article", "blockquote", "pre", "dd", "dt", "header", "footer",
}  # fmt: skip
_SKIP_TAGS = {"script", "style", "noscript", "template"}
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")


@dataclass(frozen=True)
class Passage:
    """``index``-th passage of document ``doc_id``; ``key`` is ``"<doc_id>#<index>"``."""

    doc_id: str
    index: int
    title: str
    text: str

    @property
    def key(self) -> str:
        return f"{self.doc_id}#{self.index}"

    @property
    def search_text(self) -> str:
        """What every retriever indexes: the document title (often the strongest match for an
        item, being an article or song name), a newline, the passage text."""
        return f"{self.title}\n{self.text}"


class _HTMLText(HTMLParser):
    """Collects visible text; block elements start a new paragraph."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title_parts: list[str] = []
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in _SKIP_TAGS:
            self._skip += 1
        elif tag == "title":
            self._in_title = True
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag == "title":
            self._in_title = False
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        (self.title_parts if self._in_title else self.parts).append(data)


def html_to_text(html: str) -> tuple[str, str]:
    """``(title, text)`` of an HTML page; paragraphs are separated by blank lines."""
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    paragraphs = [" ".join(p.split()) for p in "".join(parser.parts).split("\n\n")]
    return " ".join("".join(parser.title_parts).split()), "\n\n".join(p for p in paragraphs if p)


def split_passages(text: str, passage_words: int = 200) -> list[str]:
    """Passages of at most ``passage_words`` words (whitespace-normalised), in text order."""
    if passage_words < 1:
        raise ValueError("passage_words must be >= 1")
    pieces: list[list[str]] = []
    for paragraph in re.split(r"\n\s*\n", text):
        words = paragraph.split()
        if len(words) <= passage_words:
            pieces.append(words)
            continue
        for sentence in _SENTENCE_END.split(paragraph):
            sentence_words = sentence.split()
            for start in range(0, len(sentence_words), passage_words):
                pieces.append(sentence_words[start : start + passage_words])
    passages: list[str] = []
    current: list[str] = []
    for words in pieces:
        if current and len(current) + len(words) > passage_words:
            passages.append(" ".join(current))
            current = []
        current.extend(words)
    if current:
        passages.append(" ".join(current))
    return passages


def read_documents(
    source: str | os.PathLike, passage_words: int = 200
) -> tuple[list[Passage], int, list[InputError]]:
    """``(passages, number of documents read, errors)`` of a folder or a JSONL dump.

    Unreadable files, undecodable text and malformed JSONL lines become errors (the others are
    read); empty documents are skipped silently. Raises :class:`InputError` if ``source`` is
    neither a folder nor a file.
    """
    source = Path(source)
    if source.is_dir():
        documents, errors = _read_folder(source)
    elif source.is_file():
        documents, errors = _read_dump(source)
    else:
        raise InputError(source, "document source not found (expected a folder or a JSONL file)")
    passages: list[Passage] = []
    count = 0
    for doc_id, title, text in documents:
        chunks = split_passages(text, passage_words)
        count += bool(chunks)
        passages.extend(Passage(doc_id, i, title, chunk) for i, chunk in enumerate(chunks))
    return passages, count, errors


def _read_folder(root: Path) -> tuple[list[tuple[str, str, str]], list[InputError]]:
    documents: list[tuple[str, str, str]] = []
    listing = walk_files(root, TEXT_SUFFIXES + HTML_SUFFIXES)
    errors: list[InputError] = list(listing.errors)
    for path in listing.files:
        suffix = path.suffix.lower()
        try:
            raw = _read_html(path) if suffix in HTML_SUFFIXES else read_text(path)
        except InputError as exc:
            errors.append(exc)
            continue
        doc_id = path.relative_to(root).as_posix()
        if suffix in HTML_SUFFIXES:
            title, text = html_to_text(raw)
        else:
            title, text = "", raw
        documents.append((doc_id, title or _title_from_text(text) or path.stem, text))
    return documents, errors


# <meta charset="windows-1252"> or <meta http-equiv="Content-Type" content="text/html; charset=...">
_DECLARED_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([A-Za-z0-9._:-]+)", re.IGNORECASE)


def _read_html(path: Path) -> str:
    """An HTML page as :func:`read_text` reads text, or else in the charset its ``<meta>`` tag
    declares (pages saved before UTF-8 was the norm: windows-1252, ISO-8859-1, Shift_JIS ...)."""
    raw = read_bytes(path)
    try:
        return decode_text(raw, path)
    except InputError as not_utf8:
        declared = _DECLARED_CHARSET.search(raw[:4096])
        if declared is None:
            raise
        charset = declared.group(1).decode("ascii")
        try:
            return raw.decode(charset).replace("\r\n", "\n").replace("\r", "\n")
        except (LookupError, UnicodeDecodeError) as exc:
            reason = f"{not_utf8.reason}, nor the {charset} its <meta> declares ({exc})"
            raise InputError(path, reason) from exc


def _read_dump(path: Path) -> tuple[list[tuple[str, str, str]], list[InputError]]:
    lines = read_text(path).splitlines()
    documents: list[tuple[str, str, str]] = []
    objects, errors = jsonl_objects(path, lines)
    seen: set[str] = set()
    for number, row in objects:
        if not isinstance(row.get("text"), str):
            errors.append(InputError(f"{path}:line {number}", 'expected an object with a "text" string'))
            continue
        doc_id = str(row.get("id") or f"line-{number}")
        if doc_id in seen:
            # Passage keys must be unique: provenance names passages by "<doc_id>#<index>".
            errors.append(InputError(f"{path}:line {number}", f"duplicate document id {doc_id!r}"))
            continue
        seen.add(doc_id)
        documents.append((doc_id, str(row.get("title") or ""), row["text"]))
    return documents, errors


def _title_from_text(text: str) -> str:
    """A Markdown ``# heading`` on the first non-empty line, else empty."""
    for line in text.splitlines():
        if line.strip():
            match = re.match(r"#+\s+(.*)", line.strip())
            return match.group(1).strip() if match else ""
    return ""

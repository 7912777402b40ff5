"""The ``--where`` filter grammar: one small language, compiled for both index back-ends.

Grammar (recursive descent, one token of look-ahead; nothing is ever ``eval``-ed)::

    expr        := and_expr ("or" and_expr)*
    and_expr    := not_expr ("and" not_expr)*
    not_expr    := "not" not_expr | "(" expr ")" | comparison
    comparison  := NAME op literal
                 | NAME ["not"] "in" "[" [literal ("," literal)*] "]"
                 | NAME "contains" literal                    (list columns)
                 | NAME "is" ["not"] "null"                   (a missing value, any column)
    op          := "==" | "!=" | "<" | "<=" | ">" | ">="      (ordering: numbers only)
    literal     := "string" | 'string' | number | true | false

Example: ``modality == "audio" and year >= 1950 and composer in ["Bach", "Händel"]``.

A parsed :class:`Where` is checked against the index's columns (name -> type, see
:data:`COLUMN_TYPES`): unknown columns and literals of the wrong type are errors, so a typo
never silently matches nothing or everything. It compiles to

* :meth:`Where.milvus`: a Milvus boolean expression string (``array_contains`` for lists), and
* :meth:`Where.matches`: a predicate over one metadata record (a dict), used to build the FAISS
  ID selector over the row table.

Missing values follow SQL's three-valued logic, as Milvus does for nullable fields: a
comparison with a missing value is *unknown*, ``not unknown`` is unknown, and a record matches
only when the whole expression is true. So ``not (year >= 1950)`` does not match items without
a year; ``year is null`` does (it is never unknown).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clamp3.utils.errors import InputError

COLUMN_TYPES = ("str", "int", "float", "bool", "list")
MAX_WHERE_CHARS = 4000
_TOKEN = re.compile(
    r"""\s*(?:
      (?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
    | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,)
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)
KEYWORDS = {"and", "or", "not", "in", "contains", "true", "false", "is", "null"}  # never a column name
_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "'": "'", "\\": "\\"}

Scalar = str | int | float | bool


def _unescape(match: re.Match) -> str:
    """``\\n``, ``\\"``, ... and JSON's ``\\uXXXX`` (what the search page's JSON.stringify writes)."""
    code = match.group(1)
    return chr(int(code[1:], 16)) if len(code) == 5 else _ESCAPES.get(code, code)


class FilterError(InputError):
    """A bad ``--where`` expression; ``str(err)`` is one line: ``--where: <reason>``."""

    def __init__(self, path: str, reason: str = ""):
        # Pickled as (path, reason) by InputError.__reduce__; built here from the reason alone.
        if not reason:
            path, reason = "--where", path
        super().__init__(path, reason)


# ------------------------------------------------------------------------------------ AST
@dataclass(frozen=True)
class Compare:
    column: str
    op: str  # == != < <= > >= in notin contains isnull notnull
    value: Any  # a scalar, or a tuple of scalars for in / notin


@dataclass(frozen=True)
class Not:
    inner: Node


@dataclass(frozen=True)
class BoolOp:
    op: str  # and / or
    parts: tuple[Node, ...]


Node = Compare | Not | BoolOp


# ------------------------------------------------------------------------------------ parsing
def _tokens(text: str) -> list[tuple[str, Any, int]]:
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise FilterError(f"cannot read {text[pos:].strip()[:20]!r} at character {pos + 1}")
        kind = match.lastgroup
        raw, start = match.group(kind), match.start(kind)
        if kind == "string":
            value: Any = re.sub(r"\\(u[0-9a-fA-F]{4}|.)", _unescape, raw[1:-1])
        elif kind == "number":
            value = float(raw) if any(c in raw for c in ".eE") else int(raw)
        elif kind == "name" and raw.lower() in KEYWORDS:
            kind, value = "kw", raw.lower()
        else:
            value = raw
        out.append((kind, value, start))
        pos = match.end()
    out.append(("end", None, len(text)))
    return out


class _Parser:
    def __init__(self, text: str):
        self.tokens = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, Any, int]:
        return self.tokens[self.i]

    def take(self) -> tuple[str, Any, int]:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def expect(self, kind: str, value: Any, what: str) -> None:
        got = self.take()
        if got[0] != kind or got[1] != value:
            raise FilterError(f"expected {what} at character {got[2] + 1}, found {_show(got)}")

    def accept(self, kind: str, value: Any) -> bool:
        if self.peek()[0] == kind and self.peek()[1] == value:
            self.i += 1
            return True
        return False

    def expression(self) -> Node:
        parts = [self.conjunction()]
        while self.accept("kw", "or"):
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else BoolOp("or", tuple(parts))

    def conjunction(self) -> Node:
        parts = [self.negation()]
        while self.accept("kw", "and"):
            parts.append(self.negation())
        return parts[0] if len(parts) == 1 else BoolOp("and", tuple(parts))

    def negation(self) -> Node:
        if self.accept("kw", "not"):
            return Not(self.negation())
        if self.accept("op", "("):
            inner = self.expression()
            self.expect("op", ")", "')'")
            return inner
        return self.comparison()

    def comparison(self) -> Compare:
        kind, name, pos = self.take()
        if kind != "name":
            raise FilterError(
                f"expected a column name at character {pos + 1}, found {_show((kind, name, pos))}"
            )
        kind, op, pos = self.take()
        if kind == "op" and op in ("==", "!=", "<", "<=", ">", ">="):
            return Compare(name, op, self.literal())
        if (kind, op) == ("kw", "contains"):
            return Compare(name, "contains", self.literal())
        if (kind, op) == ("kw", "is"):
            missing = not self.accept("kw", "not")
            self.expect("kw", "null", "'null'")
            return Compare(name, "isnull" if missing else "notnull", None)
        negate = (kind, op) == ("kw", "not")
        if negate:
            kind, op, pos = self.take()
        if (kind, op) == ("kw", "in"):
            return Compare(name, "notin" if negate else "in", self.literal_list())
        raise FilterError(f"expected a comparison after {name!r} at character {pos + 1}")

    def literal(self) -> Scalar:
        kind, value, pos = self.take()
        if kind in ("string", "number"):
            return value
        if kind == "kw" and value in ("true", "false"):
            return value == "true"
        raise FilterError(f"expected a value at character {pos + 1}, found {_show((kind, value, pos))}")

    def literal_list(self) -> tuple[Scalar, ...]:
        self.expect("op", "[", "'[' (a list of values)")
        values: list[Scalar] = []
        if not self.accept("op", "]"):
            values.append(self.literal())
            while self.accept("op", ","):
                values.append(self.literal())
            self.expect("op", "]", "',' or ']'")
        return tuple(values)


def _show(token: tuple[str, Any, int]) -> str:
    return "the end" if token[0] == "end" else repr(token[1])


# ------------------------------------------------------------------------------------ checking
def _type_of(value: Scalar) -> str:
    if isinstance(value, bool):
        return "bool"
    return "int" if isinstance(value, int) else "float" if isinstance(value, float) else "str"


def _check(node: Node, columns: Mapping[str, str]) -> None:
    if isinstance(node, BoolOp):
        for part in node.parts:
            _check(part, columns)
        return
    if isinstance(node, Not):
        _check(node.inner, columns)
        return
    kind = columns.get(node.column)
    if kind is None:
        raise FilterError(f"unknown column {node.column!r}; this index has: {', '.join(sorted(columns))}")
    values = node.value if node.op in ("in", "notin") else (node.value,)
    if node.op in ("isnull", "notnull"):
        return
    if node.op == "contains":
        if kind != "list" or not isinstance(node.value, str):
            raise FilterError(f"'contains' needs a list column and a string ({node.column} is {kind})")
        return
    if kind == "list":
        raise FilterError(f'{node.column} is a list column: use {node.column} contains "value"')
    if node.op in ("<", "<=", ">", ">=") and kind not in ("int", "float"):
        raise FilterError(f"{node.op} needs a number column ({node.column} is {kind})")
    for value in values:
        found = _type_of(value)
        if not (found == kind or (kind == "float" and found == "int")):
            raise FilterError(f"{node.column} holds {kind} values, compared with {value!r}")


# ------------------------------------------------------------------------------------ compiling
def _milvus_literal(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # double quotes, backslash escapes
    return repr(value)


_OPPOSITE = {"==": "!=", "!=": "==", "<": ">=", ">=": "<", "<=": ">", ">": "<=", "in": "notin", "notin": "in"}
_OPPOSITE |= {"isnull": "notnull", "notnull": "isnull"}
_NEGATIVE = {"!=", "notin"}  # true for a row whose value is missing, in some engines: guarded


def _milvus(node: Node, negate: bool = False) -> str:
    """Milvus text of ``node`` (or of its negation), negations pushed down to the comparisons.

    In that form Kleene's logic and two-valued logic agree once each comparison is true only
    for a present value, so the text asks ``is not null`` wherever a negative comparison
    (``!=``, ``not in``, ``not array_contains``) could otherwise count a missing value."""
    if isinstance(node, Not):
        return _milvus(node.inner, not negate)
    if isinstance(node, BoolOp):
        op = {"and": "or", "or": "and"}[node.op] if negate else node.op
        return "(" + f" {op} ".join(_milvus(p, negate) for p in node.parts) + ")"
    column = node.column
    if node.op == "contains":
        test = f"array_contains({column}, {_milvus_literal(node.value)})"
        return f"({column} is not null and not {test})" if negate else test
    op = _OPPOSITE[node.op] if negate else node.op
    if op in ("isnull", "notnull"):
        return f"({column} is {'null' if op == 'isnull' else 'not null'})"
    if op in ("in", "notin"):
        items = ", ".join(_milvus_literal(v) for v in node.value)
        test = f"{column} {'not in' if op == 'notin' else 'in'} [{items}]"
    else:
        test = f"{column} {op} {_milvus_literal(node.value)}"
    return f"({column} is not null and {test})" if op in _NEGATIVE else f"({test})"


_COMPARE = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "in": lambda a, b: a in b,
    "notin": lambda a, b: a not in b,
    "contains": lambda a, b: b in a,
}


def _truth(node: Node, record: Mapping[str, Any]) -> bool | None:
    """True / False / None (unknown: a missing value was compared), Kleene's logic."""
    if isinstance(node, Not):
        inner = _truth(node.inner, record)
        return None if inner is None else not inner
    if isinstance(node, BoolOp):
        results = [_truth(p, record) for p in node.parts]
        decisive = node.op == "or"  # True decides an "or", False decides an "and"
        if decisive in results:
            return decisive
        return None if None in results else not decisive
    value = record.get(node.column)
    if node.op in ("isnull", "notnull"):
        return (value is None) == (node.op == "isnull")
    if value is None:
        return None
    return bool(_COMPARE[node.op](value, node.value))


@dataclass(frozen=True)
class Where:
    """A checked filter: ``text`` as given, ``tree`` the parsed expression."""

    text: str
    tree: Node

    def milvus(self) -> str:
        """The Milvus boolean expression (string literals JSON-quoted, lists via array_contains)."""
        return _milvus(self.tree)

    def matches(self, record: Mapping[str, Any]) -> bool:
        """Whether one metadata record passes (unknown counts as no)."""
        return _truth(self.tree, record) is True


def parse_where(text: str, columns: Mapping[str, str]) -> Where:
    """Parse and check ``text`` against ``columns`` (name -> one of :data:`COLUMN_TYPES`).

    Raises :class:`FilterError` (an ``InputError``: one line, exit status 2 in the CLI) for a
    syntax error, an unknown column or a value of the wrong type.
    """
    if not text.strip():
        raise FilterError("the expression is empty")
    if len(text) > MAX_WHERE_CHARS:
        raise FilterError(f"longer than {MAX_WHERE_CHARS} characters")
    parser = _Parser(text)
    try:
        tree = parser.expression()
    except RecursionError:
        raise FilterError("brackets or 'not's nested too deeply") from None
    kind, value, pos = parser.peek()
    if kind != "end":
        raise FilterError(f"unexpected {value!r} at character {pos + 1} (join conditions with and / or)")
    _check(tree, columns)
    return Where(text, tree)


def with_modality(where: Where | None, modality: str) -> Where:
    """``where`` (or nothing) restricted to one modality, as one filter; ``ValueError`` for a
    modality that no row can have (``"video"`` would only ever match nothing)."""
    from clamp3.inputs import check_modality

    check_modality(modality)
    condition = Compare("modality", "==", modality)
    if where is None:
        return Where(f"modality == {json.dumps(modality)}", condition)
    text = f"modality == {json.dumps(modality)} and ({where.text})"
    return Where(text, BoolOp("and", (condition, where.tree)))

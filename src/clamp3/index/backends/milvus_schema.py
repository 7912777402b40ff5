"""Milvus plumbing for :mod:`clamp3.index.backends.milvus`: the client, the collection schema,
and value conversions (kept apart so the back-end class reads as index logic)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from clamp3.index.records import BASE_COLUMNS
from clamp3.utils.errors import InputError
from clamp3.utils.extras import optional_module

LIST_CAPACITY, LIST_ITEM_CHARS, TEXT_CHARS = 256, 1024, 65535


class _NoMilvus(Exception):
    """Stands in for pymilvus's errors where it is not installed (nothing raises it)."""


try:  # pymilvus's own exception type, for turning server answers into one-line errors
    from pymilvus.exceptions import MilvusException as _MilvusException

    MILVUS_ERRORS: tuple[type[Exception], ...] = (_MilvusException,)
except ImportError:
    MILVUS_ERRORS = (_NoMilvus,)


def import_pymilvus():
    return optional_module("pymilvus", "the Milvus backend needs pymilvus", "milvus")


def resolve_uri(uri: str) -> str:
    """A server URI as it is; a Lite file as an absolute path (so any working folder finds it)."""
    if "://" in uri:
        return uri
    return str(Path(uri).expanduser().resolve())


def connect(uri: str, token_env: str | None = None) -> Any:
    """A ``MilvusClient`` for ``uri``; the token comes from the environment variable ``token_env``."""
    pymilvus = import_pymilvus()
    token = ""
    if token_env:
        token = os.environ.get(token_env, "")
        if not token:
            raise InputError(uri, f"the environment variable {token_env} (the Milvus token) is not set")
    try:
        return pymilvus.MilvusClient(uri=uri, token=token)
    except Exception as exc:  # pymilvus raises its own types and grpc/OS errors: say where
        hint = "" if "://" in uri else "; a Milvus Lite file serves one process: is another one using it?"
        raise InputError(uri, f"cannot open Milvus ({type(exc).__name__}: {exc}){hint}") from exc


def schema(dim: int, columns: dict[str, str]) -> Any:
    data_type = import_pymilvus().DataType
    schema = import_pymilvus().MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("key", data_type.VARCHAR, is_primary=True, max_length=TEXT_CHARS)
    schema.add_field("vector", data_type.FLOAT_VECTOR, dim=dim)
    scalar = {
        "str": data_type.VARCHAR,
        "int": data_type.INT64,
        "float": data_type.DOUBLE,
        "bool": data_type.BOOL,
    }
    for name, kind in {**BASE_COLUMNS, **columns}.items():
        if name == "key":
            continue
        if kind == "list":
            schema.add_field(
                name,
                data_type.ARRAY,
                element_type=data_type.VARCHAR,
                max_capacity=LIST_CAPACITY,
                max_length=LIST_ITEM_CHARS,
                nullable=True,
            )
        elif kind == "str":
            schema.add_field(name, data_type.VARCHAR, max_length=TEXT_CHARS, nullable=True)
        else:
            schema.add_field(name, scalar[kind], nullable=True)
    return schema


@contextlib.contextmanager
def quiet_iterator() -> Iterator[None]:
    """Mute two harmless messages of a query iterator on Milvus Lite: Lite's in-process server
    lacks the timestamp call the iterator tries first (an ERROR from grpc) and pymilvus then warns
    that it uses a client-side timestamp instead, on every index load."""
    loggers = [logging.getLogger(name) for name in ("grpc._server", "pymilvus")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def plain(value: Any) -> Any:
    """Milvus values -> JSON-friendly Python (ARRAY fields come back as lists or repeated fields)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return [str(v) for v in value]


def check_lengths(row: dict[str, Any], columns: dict[str, str]) -> None:
    for name, kind in columns.items():
        value = row.get(name)
        if kind != "list" or value is None:
            continue
        if len(value) > LIST_CAPACITY or any(len(v) > LIST_ITEM_CHARS for v in value):
            raise InputError(
                row["key"], f"{name}: at most {LIST_CAPACITY} values of {LIST_ITEM_CHARS} characters"
            )

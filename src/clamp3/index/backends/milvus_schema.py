"""Milvus plumbing for :mod:`clamp3.index.backends.milvus`: the client, the collection schema,
and value conversions (kept apart so the back-end class reads as index logic)."""

from __future__ import annotations

import contextlib
import logging
import os
import traceback
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


def connect(uri: str, token_env: str | None = None, existing: bool = False) -> Any:
    """A ``MilvusClient`` for ``uri``; the token comes from the environment variable ``token_env``.

    A Lite ``uri`` names a database (a file, or the folder Milvus Lite 3 makes): an existing
    folder that holds something else is refused; with ``existing`` (opening an index) the
    database must be there, since Milvus Lite would otherwise create an empty one in its place."""
    lite = "://" not in uri
    if lite and Path(uri).is_dir() and not _is_lite_database(Path(uri)):
        raise InputError(uri, "is a folder that holds no Milvus Lite database (name a new one: ./library.db)")
    if lite and existing and not Path(uri).exists():
        raise InputError(uri, "no such Milvus Lite database (moved or deleted? meta.json names it)")
    mute_alloc_timestamp()
    pymilvus = import_pymilvus()
    token = ""
    if token_env:
        token = os.environ.get(token_env, "")
        if not token:
            raise InputError(uri, f"the environment variable {token_env} (the Milvus token) is not set")
    # Milvus Lite logs its own failure to start (a locked file: a whole traceback) at ERROR;
    # the InputError below says it once, in a line.
    lite_log = logging.getLogger("milvus_lite")
    level = lite_log.level
    lite_log.setLevel(logging.CRITICAL)
    try:
        return pymilvus.MilvusClient(uri=uri, token=token)
    except Exception as exc:  # pymilvus raises its own types and grpc/OS errors: say where
        hint = "; a Milvus Lite file serves one process: is another one using it?" if lite else ""
        raise InputError(uri, f"cannot open Milvus ({type(exc).__name__}: {exc}){hint}") from exc
    finally:
        lite_log.setLevel(level)


def _is_lite_database(folder: Path) -> bool:
    """Whether ``folder`` is what Milvus Lite 3 writes for a database (its ``LOCK`` file and
    ``collections`` folder), or empty."""
    return (folder / "LOCK").exists() or (folder / "collections").is_dir() or not any(folder.iterdir())


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


class _WithoutAllocTimestamp(logging.Filter):
    """Drops grpc's ERROR for Milvus Lite's missing ``AllocTimestamp`` call (its in-process
    server lacks it; a query iterator tries it first, then uses a client-side timestamp).
    Muting the logger around the iterator (:func:`quiet_iterator`) did not catch every one: an
    index build still logged it, with its traceback, before its first write."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, NotImplementedError):
            return True
        frames = traceback.extract_tb(error.__traceback__)
        return not any(frame.name == "AllocTimestamp" for frame in frames)


def mute_alloc_timestamp() -> None:
    """Install :class:`_WithoutAllocTimestamp` on grpc's server logger (once per process)."""
    logger = logging.getLogger("grpc._server")
    if not any(isinstance(f, _WithoutAllocTimestamp) for f in logger.filters):
        logger.addFilter(_WithoutAllocTimestamp())


@contextlib.contextmanager
def quiet_iterator() -> Iterator[None]:
    """Mute two harmless messages of a query iterator on Milvus Lite: Lite's in-process server
    lacks the timestamp call the iterator tries first (an ERROR from grpc) and pymilvus then warns
    that it uses a client-side timestamp instead, on every index load."""
    mute_alloc_timestamp()
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

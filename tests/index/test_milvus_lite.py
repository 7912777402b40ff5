"""Milvus Lite as users reach it: where its database must be, and grpc's noise about it."""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest
from embedding_support import manifest_record, write_manifest

from clamp3.cli.main import main

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")


def _embeddings(root, rng, n=6, dim=16):
    root.mkdir()
    for i in range(n):
        np.save(root / f"item{i}.npy", rng.standard_normal((1, dim)).astype(np.float32))
    write_manifest(root, [manifest_record(f"item{i}.mid", f"item{i}.npy", "symbolic") for i in range(n)])


def test_a_lite_uri_names_a_file_and_an_index_never_recreates_a_missing_one(tmp_path, rng, capsys):
    emb, idx, db = tmp_path / "emb", tmp_path / "idx", tmp_path / "library.db"
    _embeddings(emb, rng)
    base = ["--backend", "milvus", "--quiet"]
    assert main(["index", str(emb), str(tmp_path / "x"), *base, "--uri", str(emb)]) == 2
    assert "is a folder that holds no Milvus Lite database" in capsys.readouterr().err
    assert main(["index", str(emb), str(idx), *base, "--uri", str(db)]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "AllocTimestamp" not in err  # grpc's noise about Lite stays out
    db.rename(tmp_path / "moved.db")
    query = str(emb / "item0.npy")
    assert main(["search", query, str(idx)]) == 2
    assert "no such Milvus Lite database" in capsys.readouterr().err
    assert not db.exists()  # searching did not create an empty database in its place
    (tmp_path / "moved.db").rename(db)
    assert main(["search", query, str(idx), "--top-k", "1"]) == 0
    assert "item0.mid" in capsys.readouterr().out


def test_only_the_missing_timestamp_call_is_muted():
    from clamp3.index.backends.milvus_schema import mute_alloc_timestamp

    mute_alloc_timestamp()
    mute_alloc_timestamp()  # once per process, however often it is asked
    logger = logging.getLogger("grpc._server")
    assert len(logger.filters) == 1

    def record(exc: BaseException) -> logging.LogRecord:
        try:
            raise exc
        except BaseException:
            return logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "failed", (), sys.exc_info())

    def AllocTimestamp():  # noqa: N802 - named as the grpc stub's method
        raise NotImplementedError("Method not implemented!")

    try:
        AllocTimestamp()
    except NotImplementedError as exc:
        muted = record(exc)
    assert not logger.filters[0].filter(muted)
    assert logger.filters[0].filter(record(NotImplementedError("something else")))
    assert logger.filters[0].filter(record(RuntimeError("a real server error")))


def test_a_database_another_process_holds_is_one_line(tmp_path, rng):
    """Milvus Lite locks its database; a second process gets our one line, not Lite's traceback."""
    import subprocess

    import pymilvus

    emb, idx, db = tmp_path / "emb", tmp_path / "idx", tmp_path / "library.db"
    _embeddings(emb, rng)
    assert main(["index", str(emb), str(idx), "--backend", "milvus", "--quiet", "--uri", str(db)]) == 0
    holder = pymilvus.MilvusClient(uri=str(db))  # this process holds the database
    assert holder.has_collection("idx")
    run = subprocess.run(
        [sys.executable, "-m", "clamp3.cli.main", "search", str(emb / "item0.npy"), str(idx)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith(f"error: {db}: cannot open Milvus"), run.stderr
    assert run.stderr.count("\n") == 1, run.stderr
    assert "is another one using it?" in run.stderr and "Traceback" not in run.stderr

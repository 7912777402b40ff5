"""Shared by the index tests: both back-ends as a fixture (Milvus Lite as a real engine),
catalogue-like records, and brute-force truth (float64 cosine, equal scores by key)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from clamp3.index import SearchIndex, normalize

BACKENDS = ["faiss", pytest.param("milvus", marks=pytest.mark.milvus)]
COLUMNS = {"composer": "str", "year": "int", "tags": "list", "rating": "float"}
_names = itertools.count()


@pytest.fixture(scope="module")
def lite_file(tmp_path_factory):
    """One Milvus Lite file per module (each test uses its own collection in it)."""
    pytest.importorskip("pymilvus")
    pytest.importorskip("milvus_lite")
    return str(tmp_path_factory.mktemp("milvus") / "tests.db")


@pytest.fixture(params=BACKENDS)
def make(request):
    """make(dim, kind="flat", **options) -> an empty index on the parametrised back-end."""

    def factory(dim: int, kind: str = "flat", **options):
        if request.param == "milvus":
            uri = request.getfixturevalue("lite_file")
            options = {"uri": uri, "collection": f"t{next(_names)}", **options}
        return SearchIndex.create(dim, kind, backend=request.param, **options)

    factory.backend = request.param
    return factory


def records_for(n: int, rng=None) -> list[dict]:
    composers = ("Bach", "Händel", "Mozart", None)
    out = []
    for i in range(n):
        out.append(
            {
                "key": f"item{i:04d}",
                "path": f"music/item{i:04d}.mid",
                "modality": ("text", "symbolic", "audio")[i % 3],
                "sha256": f"{i:064x}",
                "n_items": 1 + i % 4,
                "composer": composers[i % 4],
                "year": None if i % 7 == 0 else 1700 + (i * 37) % 300,
                "tags": [["chorale"], ["aria", "live"], []][i % 3] or None,
                "rating": float(i % 5) / 2,
            }
        )
    return out


def truth(db: np.ndarray, records: list[dict], queries: np.ndarray, k: int, keep=None) -> list[list[str]]:
    """Brute-force top-k keys (float64 cosine, equal scores by key) over rows passing ``keep``."""
    rows = [i for i, r in enumerate(records) if keep is None or keep(r)]
    sims = normalize(queries).astype(np.float64) @ normalize(db[rows]).astype(np.float64).T
    out = []
    for q in range(len(queries)):
        order = sorted(range(len(rows)), key=lambda j: (-round(sims[q, j], 6), records[rows[j]]["key"]))
        out.append([records[rows[j]]["key"] for j in order[:k]])
    return out


def keys_of(hits) -> list[list[str]]:
    return [[h.key for h in row] for row in hits]


class Boom(RuntimeError):
    """The 'process died here' of the killed-write tests."""


def kill_faiss_commit(monkeypatch) -> None:
    """Make a FAISS index die at its commit point: ``meta.json`` is never replaced."""
    from clamp3.index.backends import faiss as faiss_backend

    def dying_write(path, data):
        raise Boom("killed")

    monkeypatch.setattr(faiss_backend, "write_json_atomic", dying_write)

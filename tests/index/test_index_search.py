"""SearchIndex: exact search equals brute force, approximate recall, append == rebuild,
save/load round trip, modality filter, concurrent reads during appends."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from clamp3.index import SearchIndex, normalize
from clamp3.index.kinds import recall_at_k
from clamp3.model_identity import ModelIdentity
from clamp3.utils.errors import InputError

pytest.importorskip("faiss")


def _records(n: int, offset: int = 0) -> list[dict]:
    modalities = ("text", "symbolic", "audio")
    return [{"key": f"item{i:05d}", "modality": modalities[i % 3]} for i in range(offset, offset + n)]


def _brute_force(db: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k rows and cosines by plain numpy (float64), ties broken by lower row."""
    sims = normalize(queries).astype(np.float64) @ normalize(db).astype(np.float64).T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(sims, order, axis=1)


def test_exact_search_equals_numpy_top_k(rng):
    db = rng.standard_normal((500, 32)).astype(np.float32) * rng.uniform(0.1, 5, (500, 1)).astype(np.float32)
    queries = rng.standard_normal((20, 32)).astype(np.float32)
    index = SearchIndex.create(32)
    assert index.add(db, _records(500)) == 500
    hits = index.search(queries, k=15)
    rows, sims = _brute_force(db, queries, 15)
    for q in range(20):
        assert [h.row for h in hits[q]] == rows[q].tolist()
        np.testing.assert_allclose([h.score for h in hits[q]], sims[q], atol=1e-5)
        assert [h.key for h in hits[q]] == [f"item{r:05d}" for r in rows[q]]


def test_an_ivf_index_of_a_few_vectors_is_exact_and_quiet(rng, capfd):
    """FAISS printed "WARNING clustering 5 points to 1 centroids: please provide at least 39
    training points" from C++ straight to the terminal."""
    db = rng.standard_normal((5, 16)).astype(np.float32)
    index = SearchIndex.create(16, "ivf", train_vectors=db)
    index.add(db, _records(5))
    assert [h.row for h in index.search(db[:1], k=5)[0]][0] == 0
    assert "please provide at least" not in capfd.readouterr().err


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_recall_is_high(rng, kind):
    # Clustered data (like real embeddings) plus fresh queries near the clusters.
    centers = rng.standard_normal((40, 48)).astype(np.float32)
    db = centers[rng.integers(0, 40, 4000)] + 0.6 * rng.standard_normal((4000, 48)).astype(np.float32)
    queries = centers[rng.integers(0, 40, 100)] + 0.6 * rng.standard_normal((100, 48)).astype(np.float32)
    index = SearchIndex.create(48, kind, train_vectors=db)
    index.add(db, _records(len(db)))
    assert index.meta["params"], "approximate kinds store their calibrated search setting"
    found = np.array([[h.row for h in hits] for hits in index.search(queries, k=10)])
    truth, _ = _brute_force(db, queries, 10)
    assert recall_at_k(found, truth) >= 0.95


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_append_equals_full_rebuild(rng, tmp_path, kind):
    db = rng.standard_normal((600, 24)).astype(np.float32)
    queries = rng.standard_normal((50, 24)).astype(np.float32)
    full = SearchIndex.create(24, kind, train_vectors=db)
    full.add(db, _records(600))
    part = SearchIndex.create(24, kind, train_vectors=db[:350])  # ivf: lists learnt on the first part
    part.add(db[:350], _records(350))
    part.save(tmp_path / "idx")
    reopened = SearchIndex.load(tmp_path / "idx")
    # Re-adding everything must only add the missing keys (no duplicates).
    assert reopened.add(db, _records(600)) == 250
    assert len(reopened) == 600
    assert [reopened.entry(i)["key"] for i in range(600)] == [r["key"] for r in _records(600)]
    a, b = full.search(queries, k=10), reopened.search(queries, k=10)
    if kind == "flat":
        assert [[h.row for h in q] for q in a] == [[h.row for h in q] for q in b]
    else:  # graphs/lists differ with insertion history; both must find the exact neighbours
        truth, _ = _brute_force(db, queries, 10)
        for hits in (a, b):
            assert recall_at_k(np.array([[h.row for h in q] for q in hits]), truth) >= 0.93


def test_save_load_round_trip_and_meta(rng, tmp_path):
    db = rng.standard_normal((50, 16)).astype(np.float32)
    index = SearchIndex.create(16, identity=ModelIdentity("tiny-test"))
    index.add(
        db,
        [
            {"key": f"a/{i}", "path": f"a/{i}.mid", "modality": "symbolic", "npy": f"a/{i}.npy"}
            for i in range(50)
        ],
    )
    index.save(tmp_path)
    loaded = SearchIndex.load(tmp_path)
    assert loaded.meta["count"] == 50 and loaded.meta["dimension"] == 16
    assert loaded.meta["metric"] == "cosine" and loaded.model == "tiny-test" and loaded.kind == "flat"
    entry = loaded.entry(7)
    assert {k: entry[k] for k in ("key", "path", "modality", "npy")} == {
        "key": "a/7",
        "path": "a/7.mid",
        "modality": "symbolic",
        "npy": "a/7.npy",
    }
    assert entry["sha256"] is None and entry["n_items"] is None  # not given: unknown, not invented
    hit = loaded.search(db[7], k=1)[0][0]
    assert (hit.path, hit.row, hit.modality) == ("a/7.mid", 7, "symbolic")
    assert hit.score == pytest.approx(1.0, abs=1e-5)


def test_paths_that_are_not_utf8_survive_save_and_load(rng, tmp_path):
    # os.fsdecode(b"caf\xe9.mid") on a UTF-8 system: a lone surrogate, which UTF-8 cannot encode.
    name = "caf\udce9.mid"
    index = SearchIndex.create(8)
    index.add(rng.standard_normal((2, 8)).astype(np.float32), [{"key": name, "path": name}, {"key": "b"}])
    index.save(tmp_path / "idx")
    assert SearchIndex.load(tmp_path / "idx").entry(0)["path"] == name


def test_interrupted_append_is_repaired_on_load(rng, tmp_path):
    """ids.jsonl is written before index.faiss: extra id rows of a killed save are dropped."""
    db = rng.standard_normal((30, 8)).astype(np.float32)
    index = SearchIndex.create(8)
    index.add(db[:20], _records(20))
    index.save(tmp_path)
    with open(tmp_path / "ids.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"row": 20, "key": "ghost", "path": "ghost"}\n')
    loaded = SearchIndex.load(tmp_path)
    assert len(loaded) == 20 and "ghost" not in loaded
    assert loaded.add(db, _records(30)) == 10


def test_modality_filter_returns_only_that_modality(rng):
    db = rng.standard_normal((90, 16)).astype(np.float32)
    index = SearchIndex.create(16)
    index.add(db, _records(90))
    hits = index.search(db[:4], k=5, modality="audio")
    rows_audio = np.array([i for i in range(90) if i % 3 == 2])
    truth, _ = _brute_force(db[rows_audio], db[:4], 5)
    for q in range(4):
        assert all(h.modality == "audio" for h in hits[q])
        assert [h.row for h in hits[q]] == rows_audio[truth[q]].tolist()
    with pytest.raises(ValueError, match="unknown modality .image.; choose text, symbolic, audio"):
        index.search(db[:2], k=5, modality="image")  # images are indexed as text (their captions)


def test_bad_vectors_are_refused(rng):
    index = SearchIndex.create(8)
    with pytest.raises(InputError, match="zero or non-finite"):
        index.add(np.zeros((1, 8), np.float32), [{"key": "z", "path": "zero.npy"}])
    with pytest.raises(InputError, match="dimension 4"):
        index.add(np.ones((1, 4), np.float32), [{"key": "w", "path": "wide.npy"}])
    with pytest.raises(ValueError, match="query dimension"):
        index.search(np.ones((1, 5), np.float32))
    assert len(index) == 0
    index.add(np.ones((1, 8), np.float32), [{"key": "one", "path": "one.npy"}])
    for query in (np.full(8, np.nan), np.zeros(8), np.stack([np.ones(8), np.full(8, np.inf)])):
        with pytest.raises(ValueError, match="zero or non-finite query"):  # never "no hits"
            index.search(query.astype(np.float32))
    assert [h.key for h in index.search(np.ones(8, np.float32))[0]] == ["one"]
    for k in (0, -1, 2.5, True, "3"):
        with pytest.raises(ValueError, match=f"k must be a positive integer, got {k!r}"):
            index.search(np.ones(8, np.float32), k=k)
    assert len(index.search(np.ones(8, np.float32), k=np.int64(3))[0]) == 1


def test_load_reports_missing_files(rng, tmp_path):
    with pytest.raises(InputError, match="meta.json: missing"):
        SearchIndex.load(tmp_path)
    index = SearchIndex.create(8)
    index.add(rng.standard_normal((3, 8)).astype(np.float32), _records(3))
    index.save(tmp_path)
    (tmp_path / "index.faiss").unlink()
    with pytest.raises(InputError, match="index.faiss: missing"):
        SearchIndex.load(tmp_path)


def test_concurrent_searches_during_appends(rng):
    """Readers never see a half-added batch: every hit row has its record and a sane score."""
    db = rng.standard_normal((2000, 16)).astype(np.float32)
    index = SearchIndex.create(16)
    index.add(db[:200], _records(200))
    failures: list[str] = []

    def reader() -> None:
        for _ in range(60):
            for hits in index.search(db[:8], k=5):
                for h in hits:
                    if index.entry(h.row)["key"] != h.key or not -1.0001 <= h.score <= 1.0001:
                        failures.append(f"row {h.row}")

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for start in range(200, 2000, 200):
        index.add(db[start : start + 200], _records(200, start))
    for t in threads:
        t.join()
    assert not failures
    assert len(index) == 2000
    assert [h.row for h in index.search(db[1500], k=1)[0]] == [1500]


def test_reload_sees_rows_added_by_another_writer(rng, tmp_path):
    db = rng.standard_normal((40, 8)).astype(np.float32)
    writer = SearchIndex.create(8)
    writer.add(db[:10], _records(10))
    writer.save(tmp_path)
    reader = SearchIndex.load(tmp_path)
    writer.add(db[10:], _records(30, 10))
    writer.save()
    assert len(reader) == 10 and reader.search(db[25], k=1)[0][0].row != 25
    reader.reload()
    assert len(reader) == 40 and reader.search(db[25], k=1)[0][0].row == 25


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_stored_vectors_survive_save_and_load(rng, tmp_path, kind):
    db = rng.standard_normal((120, 16)).astype(np.float32)
    index = SearchIndex.create(16, kind, train_vectors=db)
    index.add(db, _records(120))
    index.save(tmp_path)
    loaded = SearchIndex.load(tmp_path)
    row = loaded.row_of("item00077")
    assert row == 77
    np.testing.assert_allclose(loaded.vector(row), normalize(db[77])[0], atol=1e-6)
    with pytest.raises(IndexError):
        loaded.vector(120)


@pytest.mark.parametrize("k", [1, 3, 12, 29])
def test_tied_hits_come_back_in_key_order(rng, k):
    """30 identical vectors (duplicate files), added with keys in reverse order: whatever order
    FAISS's heap keeps, the top k are the k smallest keys, even past the extra rows fetched."""
    db = rng.standard_normal((100, 16)).astype(np.float32)
    twin = rng.standard_normal(16).astype(np.float32)
    index = SearchIndex.create(16)
    index.add(db, _records(100))
    index.add(
        np.tile(twin, (30, 1)), [{"key": f"dup{i:02d}", "modality": "text"} for i in reversed(range(30))]
    )
    hits = index.search(twin, k=k)[0]
    assert [h.key for h in hits] == [f"dup{i:02d}" for i in range(k)]
    assert len({h.score for h in hits}) == 1
    filtered = index.search(twin, k=k, modality="text")[0]
    assert [h.key for h in filtered] == [f"dup{i:02d}" for i in range(k)]


def test_chunked_exact_top_k_equals_a_full_sort(rng, monkeypatch):
    from clamp3.index import kinds

    monkeypatch.setattr(kinds, "SCAN_CHUNK", 64)  # many chunks, ties across chunk borders
    db = rng.standard_normal((500, 8)).astype(np.float32)
    db[300:310] = db[5]  # ten rows tied with row 5, in another chunk
    queries = np.vstack([db[5], rng.standard_normal((6, 8)).astype(np.float32)])
    full = np.argsort(-(queries @ db.T), axis=1, kind="stable")[:, :12]
    np.testing.assert_array_equal(kinds.exact_top_k(queries, db, 12), full)
    probes = kinds.probe_queries(db, 20)
    monkeypatch.setattr(kinds, "SCAN_CHUNK", 1 << 20)
    np.testing.assert_allclose(kinds.probe_queries(db, 20), probes, atol=1e-6)  # chunking changes nothing

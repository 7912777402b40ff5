"""One ``SearchIndex`` interface on both back-ends, Milvus Lite as a real engine: exact search and
filtered search equal brute force, ties in key order, save/load, remove, and sync (additions,
edits, deletions, a sync that fails half-way and is rerun)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from index_support import COLUMNS, lite_file, make  # noqa: F401 (fixtures)
from index_support import keys_of as _keys
from index_support import records_for as _records
from index_support import truth as _truth
from index_support import Boom, kill_faiss_commit

from clamp3.index import SearchIndex, normalize
from clamp3.index.kinds import recall_at_k
from clamp3.index.sync import apply_sync, plan_sync

pytest.importorskip("faiss")


def test_exact_search_equals_brute_force(make, rng):
    db = rng.standard_normal((200, 16)).astype(np.float32)
    records = _records(200)
    index = make(16, columns=COLUMNS)
    assert index.add(db, records) == 200 and index.add(db, records) == 0
    queries = rng.standard_normal((5, 16)).astype(np.float32)
    hits = index.search(queries, k=7)
    assert _keys(hits) == _truth(db, records, queries, 7)
    sims = normalize(queries) @ normalize(db).T
    for q, row in enumerate(hits):
        for hit in row:
            assert hit.score == pytest.approx(sims[q, index.row_of(hit.key)], abs=1e-5)
            assert index.entry(hit.row)["key"] == hit.key


def test_an_item_against_itself_scores_at_most_one(make, rng):
    """float32 unit vectors dot themselves to 1 +- a few ulp; a cosine above 1 is not shown."""
    db = normalize(rng.standard_normal((300, 768)).astype(np.float32))
    assert (np.einsum("ij,ij->i", db, db) > 1).any()  # the rounding this guards against occurs
    index = make(768)
    index.add(db, _records(300))
    for q, row in enumerate(index.search(db[:40], k=3)):
        assert row[0].key == f"item{q:04d}" and row[0].score == pytest.approx(1.0, abs=1e-6)
        assert all(-1.0 <= hit.score <= 1.0 for hit in row)


FILTERS = [
    ('modality == "audio"', lambda r: r["modality"] == "audio"),
    ("year >= 1850 and year < 1950", lambda r: r["year"] is not None and 1850 <= r["year"] < 1950),
    ('composer in ["Bach", "Händel"]', lambda r: r["composer"] in ("Bach", "Händel")),
    (
        'composer not in ["Bach"] and modality != "text"',
        lambda r: r["composer"] not in (None, "Bach") and r["modality"] != "text",
    ),
    ('tags contains "live" or rating > 1.5', lambda r: "live" in (r["tags"] or []) or r["rating"] > 1.5),
    # Missing values never match, not even under "not" (SQL's rule, and Milvus's).
    ("not (year >= 1850)", lambda r: r["year"] is not None and r["year"] < 1850),
    ('n_items == 2 and sha256 != "x"', lambda r: r["n_items"] == 2),
    # ... except by asking for them: "is null" is never unknown, also under "not".
    ('year is null or composer == "Bach"', lambda r: r["year"] is None or r["composer"] == "Bach"),
    (
        "not (tags is not null) and composer is not null",
        lambda r: not r["tags"] and r["composer"] is not None,
    ),
]


@pytest.mark.parametrize("plan", ["subset", "engine"])
@pytest.mark.parametrize("where,keep", FILTERS, ids=[f[0] for f in FILTERS])
def test_filtered_search_equals_brute_force_over_the_subset(make, rng, where, keep, plan):
    """Both plans: the exact score of the few matching rows (the default at this size) and the
    engine's own filtered search (forced by ``exact_subset_rows = 0``)."""
    db = rng.standard_normal((240, 12)).astype(np.float32)
    records = _records(240)
    index = make(12, columns=COLUMNS)
    index.add(db, records)
    if plan == "engine":
        index.exact_subset_rows = 0
    queries = rng.standard_normal((4, 12)).astype(np.float32)
    assert _keys(index.search(queries, k=9, where=where)) == _truth(db, records, queries, 9, keep)
    assert len(index._subsets) == (1 if plan == "subset" else 0)  # the plan that was meant ran
    expected = sum(keep(r) for r in records)
    assert len(index.matching_rows(index.where(where))) == expected
    if expected < 9:
        assert all(len(row) == expected for row in index.search(queries, k=9, where=where))


def test_modality_and_where_combine(make, rng):
    db = rng.standard_normal((90, 8)).astype(np.float32)
    records = _records(90)
    index = make(8, columns=COLUMNS)
    index.add(db, records)
    keep = lambda r: r["modality"] == "symbolic" and r["composer"] == "Bach"  # noqa: E731
    found = index.search(db[:3], k=5, modality="symbolic", where='composer == "Bach"')
    assert _keys(found) == _truth(db, records, db[:3], 5, keep)
    assert index.search(db[:2], k=5, where='composer == "Telemann"') == [[], []]


@pytest.mark.parametrize("k", [1, 3, 12])
def test_tied_hits_come_back_in_key_order(make, rng, k):
    """Twenty copies of one vector (keys shuffled on insert) and some others: the copies tie."""
    twin = rng.standard_normal(8).astype(np.float32)
    keys = [f"dup{i:02d}" for i in rng.permutation(20)]
    db = np.vstack([np.tile(twin, (20, 1)), rng.standard_normal((30, 8)).astype(np.float32)])
    records = [{"key": key} for key in keys] + [{"key": f"other{i:02d}"} for i in range(30)]
    index = make(8)
    index.add(db, records)
    hits = index.search(twin, k=k)[0]
    assert [h.key for h in hits] == sorted(keys)[:k]


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_kinds_reach_their_recall(make, rng, kind):
    centres = rng.standard_normal((12, 24))
    db = (centres[rng.integers(0, 12, 800)] + 0.4 * rng.standard_normal((800, 24))).astype(np.float32)
    index = make(24, kind, train_vectors=db)
    index.add(db, [{"key": f"r{i:04d}"} for i in range(800)])
    queries = (db[rng.choice(800, 40)] + 0.3 * rng.standard_normal((40, 24))).astype(np.float32)
    found = np.array([[index.row_of(h.key) for h in row] for row in index.search(queries, k=10)])
    truth = np.argsort(-(normalize(queries) @ normalize(db).T), axis=1)[:, :10]
    assert recall_at_k(found, truth) >= 0.9


def test_save_load_keeps_metadata_vectors_and_removals(make, rng, tmp_path):
    db = rng.standard_normal((30, 8)).astype(np.float32)
    records = _records(30)
    index = make(8, columns=COLUMNS, model="tiny-test")
    index.add(db, records)
    assert index.remove(["item0003", "item0004", "nope"]) == 2
    index.save(tmp_path / "idx")
    loaded = SearchIndex.load(tmp_path / "idx")
    assert loaded.backend == make.backend and loaded.model == "tiny-test" and len(loaded) == 28
    assert "item0003" not in loaded and loaded.catalogue_columns == COLUMNS
    entry = loaded.entry(loaded.row_of("item0005"))
    assert {k: entry[k] for k in ("composer", "year", "tags", "sha256", "n_items")} == {
        k: records[5][k] for k in ("composer", "year", "tags", "sha256", "n_items")
    }
    row = loaded.row_of("item0010")
    np.testing.assert_allclose(loaded.vector(row), normalize(db[10])[0], atol=1e-6)
    assert _keys(loaded.search(db[3], k=3))[0][0] != "item0003"


def _sync(index, db, records):
    plan = plan_sync(index, db, records)
    apply_sync(index, db, records, plan)
    return plan


def _state(index) -> dict[str, tuple]:
    """key -> (metadata without row order, rounded unit vector): what a sync must converge to."""
    rows = range(len(index))
    vectors = index.stored_vectors(list(rows))
    return {
        index.entry(r)["key"]: (
            tuple(sorted(index.entry(r).items(), key=str)),
            tuple(np.round(vectors[r], 5)),
        )
        for r in rows
    }


def test_sync_adds_replaces_and_deletes(make, rng):
    db = rng.standard_normal((60, 8)).astype(np.float32)
    records = _records(60)
    index = make(8, columns=COLUMNS)
    index.add(db[:50], records[:50])
    # Folder now: rows 0-9 deleted, 50-59 new, 20 re-embedded (new sha), 21 new vector without
    # sha256 on either side (compared by vector), 22 only its catalogue year changed.
    db2, rec2 = db.copy(), [dict(r) for r in records]
    db2[20] = rng.standard_normal(8)
    rec2[20]["sha256"] = "f" * 64
    rec2[22]["year"] = 2001
    keep = list(range(10, 60))
    db2, rec2 = db2[keep], [rec2[i] for i in keep]
    index.upsert(db[21:22], [{**records[21], "sha256": None}])
    rec2[11] = {**rec2[11], "sha256": None}
    db2[11] = rng.standard_normal(8)
    plan = _sync(index, db2, rec2)
    assert len(plan.new) == 10 and len(plan.vanished) == 10
    assert sorted(rec2[i]["key"] for i in plan.changed) == ["item0020", "item0021", "item0022"]
    reference = make(8, columns=COLUMNS)
    reference.add(db2, rec2)
    assert _state(index) == _state(reference)
    assert _sync(index, db2, rec2).writes == []  # a second sync has nothing to do
    queries = rng.standard_normal((3, 8)).astype(np.float32)
    assert _keys(index.search(queries, k=6)) == _keys(reference.search(queries, k=6))


def test_a_sync_that_dies_half_way_is_finished_by_a_rerun(make, rng, tmp_path, monkeypatch):
    db = rng.standard_normal((80, 8)).astype(np.float32)
    records = _records(80)
    index = make(8, columns=COLUMNS)
    index.add(db[:40], records[:40])
    index.save(tmp_path / "idx")
    db2 = db.copy()
    db2[:40] += 0.5  # every old row changes too
    rec2 = [{**r, "sha256": f"{i + 1000:064x}"} for i, r in enumerate(records)]
    if make.backend == "milvus":
        from clamp3.index.backends import milvus

        monkeypatch.setattr(milvus, "WRITE_BATCH", 7)
        real, calls = index._client.upsert, itertools.count()

        def dying_upsert(*args, **kwargs):
            if next(calls) == 5:  # after 5 batches (35 rows) were written
                raise Boom("killed")
            return real(*args, **kwargs)

        monkeypatch.setattr(index._client, "upsert", dying_upsert)
    else:
        kill_faiss_commit(monkeypatch)
    with pytest.raises(Boom):
        _sync(index, db2, rec2)
        index.save()
    monkeypatch.undo()
    reopened = SearchIndex.load(tmp_path / "idx")
    keys = [reopened.entry(r)["key"] for r in range(len(reopened))]
    assert len(keys) == len(set(keys))  # never a duplicate key, even mid-way
    if make.backend == "faiss":
        assert len(reopened) == 40  # the old generation is still in force
    _sync(reopened, db2, rec2)
    reopened.save()
    final = SearchIndex.load(tmp_path / "idx")
    reference = make(8, columns=COLUMNS)
    reference.add(db2, rec2)
    assert _state(final) == _state(reference) and len(final) == 80


def test_filter_caches_stay_bounded(make, rng):
    from clamp3.index.search_index import MAX_CACHED_FILTERS

    db = rng.standard_normal((40, 8)).astype(np.float32)
    index = make(8, columns=COLUMNS)
    index.add(db, _records(40))
    for year in range(MAX_CACHED_FILTERS + 20):
        assert len(index.search(db[0], k=3, where=f"year >= {1700 + year}")[0]) <= 3
    assert len(index._matching) <= MAX_CACHED_FILTERS
    assert len(getattr(index, "_selectors", {})) <= MAX_CACHED_FILTERS


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_a_rare_filter_is_answered_exactly_on_every_kind(make, rng, kind):
    """12 of 600 rows pass: the subset plan scores exactly those rows, so even an approximate
    kind returns the exact filtered top-k, on both back-ends; the subset's vectors are fetched
    once, and any change to the index drops them."""
    db = rng.standard_normal((600, 16)).astype(np.float32)
    records = [{"key": f"r{i:04d}", "year": 1900 + i % 50} for i in range(600)]
    index = make(16, kind, columns={"year": "int"}, train_vectors=db)
    index.add(db, records)
    queries = rng.standard_normal((6, 16)).astype(np.float32)
    truth = _truth(db, records, queries, 5, lambda r: r["year"] == 1907)
    assert _keys(index.search(queries, k=5, where="year == 1907")) == truth
    assert _keys(index.search(queries, k=5, where="year == 1907")) == truth and len(index._subsets) == 1
    index.remove([truth[0][0]])
    assert len(index._subsets) == 0
    assert truth[0][0] not in _keys(index.search(queries[:1], k=5, where="year == 1907"))[0]


def test_the_faiss_hnsw_storage_scan_still_serves_filters_above_the_subset_limit(make, rng):
    """A filter wider than ``exact_subset_rows`` but at most 5 % of an HNSW index: FAISS scans
    the graph's flat storage with the selector (exact); Milvus filters inside its HNSW search."""
    db = rng.standard_normal((600, 16)).astype(np.float32)
    records = [{"key": f"r{i:04d}", "year": 1900 + i % 50} for i in range(600)]
    index = make(16, "hnsw", columns={"year": "int"})
    index.add(db, records)
    index.exact_subset_rows = 5
    queries = rng.standard_normal((6, 16)).astype(np.float32)
    truth = _truth(db, records, queries, 5, lambda r: r["year"] == 1907)  # 12 rows of 600
    found = _keys(index.search(queries, k=5, where="year == 1907"))
    if make.backend == "faiss":
        assert found == truth
    else:
        assert sum(len(set(f) & set(t)) for f, t in zip(found, truth)) >= 0.9 * 30

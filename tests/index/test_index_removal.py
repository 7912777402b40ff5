"""Removing chosen items (``clamp3 index-remove``, :func:`clamp3.index.removal.remove_items`) on
both back-ends, Milvus Lite as a real engine: removed items never come back (plain or filtered
search, either plan), the rest still equals brute force, the metadata table follows, unknown
names change nothing, and a removal killed half-way is hidden and finished by a rerun."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from index_support import COLUMNS, lite_file, make  # noqa: F401 (fixtures)
from embedding_support import manifest_record, write_manifest
from index_support import keys_of, records_for, truth
from index_support import Boom, kill_faiss_commit

from clamp3.cli.main import main
from clamp3.index import SearchIndex
from clamp3.index.removal import remove_items
from clamp3.index.sync import apply_sync, plan_sync
from clamp3.utils.errors import InputError

pytest.importorskip("faiss")
N, DIM = 90, 12
GONE = ["item0003", "item0010", "item0011", "item0042", "item0077"]


def _saved(make, rng, root):
    db = rng.standard_normal((N, DIM)).astype(np.float32)
    records = records_for(N)
    index = make(DIM, columns=COLUMNS)
    index.add(db, records)
    index.save(root)
    return db, records


@pytest.mark.parametrize("plan", ["subset", "engine"])
def test_removed_items_never_come_back_and_the_rest_equals_brute_force(make, rng, tmp_path, plan):
    db, records = _saved(make, rng, tmp_path / "idx")
    # Named by key, by original path and by .npy spelling of the key, as a user would.
    names = ["item0003", "music/item0010.mid", "./music/item0011.mid", "item0042.npy", "item0077"]
    report = remove_items(tmp_path / "idx", names)
    assert report.removed == GONE and report.total == N - len(GONE)
    index = SearchIndex.load(tmp_path / "idx")
    if plan == "engine":
        index.exact_subset_rows = 0
    left = [i for i, r in enumerate(records) if r["key"] not in GONE]
    assert len(index) == len(left)
    assert json.loads((tmp_path / "idx" / "meta.json").read_text())["count"] == len(left)
    assert sorted(e["key"] for e in index.entries()) == [records[i]["key"] for i in left]
    assert all(index.entry(index.row_of(records[i]["key"]))["year"] == records[i]["year"] for i in left)
    # The removed vectors themselves as queries: each would be its own best hit.
    gone_rows = [int(k[4:]) for k in GONE]
    queries = np.vstack([db[gone_rows], rng.standard_normal((3, DIM)).astype(np.float32)])
    kept_db, kept_records = db[left], [records[i] for i in left]
    filters = [(None, None), ('modality != "x"', None), ("n_items >= 2", lambda r: r["n_items"] >= 2)]
    for where, keep in filters:
        found = keys_of(index.search(queries, k=N, where=where))
        assert not set(GONE) & set(itertools.chain(*found))
        assert [f[:8] for f in found] == truth(kept_db, kept_records, queries, 8, keep)
    with pytest.raises(KeyError):
        index.row_of("item0003")


def test_unknown_names_are_one_error_and_change_nothing(make, rng, tmp_path):
    _saved(make, rng, tmp_path / "idx")
    before = SearchIndex.load(tmp_path / "idx")
    meta = (tmp_path / "idx" / "meta.json").read_bytes()
    with pytest.raises(InputError) as info:
        remove_items(tmp_path / "idx", ["item0003", "no/such/item", "item0004.mid"])
    message = str(info.value)
    assert "2 not indexed (no/such/item, item0004.mid" in message and "nothing was removed" in message
    assert "\n" not in message
    assert (tmp_path / "idx" / "meta.json").read_bytes() == meta
    after = SearchIndex.load(tmp_path / "idx")
    assert len(after) == len(before) == N and "item0003" in after
    np.testing.assert_allclose(
        after.vector(after.row_of("item0003")), before.vector(before.row_of("item0003"))
    )
    with pytest.raises(InputError, match="no items to remove"):
        remove_items(tmp_path / "idx", [])


def _killed_removal(make, tmp_path, monkeypatch) -> None:
    """``remove_items(GONE)`` dies: on Milvus after its first delete batch (2 keys), on FAISS at
    its commit point."""
    if make.backend == "milvus":
        from clamp3.index.backends import milvus

        monkeypatch.setattr(milvus, "WRITE_BATCH", 2)
        calls = itertools.count()

        def dying_delete(self, keys):  # the first batch (2 keys) is deleted, then the process dies
            if next(calls) == 0:
                self._client.delete(self.collection, ids=keys[:2])
            raise Boom("killed")

        monkeypatch.setattr(milvus.MilvusIndex, "_delete_keys", dying_delete)
    else:
        kill_faiss_commit(monkeypatch)
    with pytest.raises(Boom):
        remove_items(tmp_path / "idx", GONE)
    monkeypatch.undo()


def test_a_removal_killed_half_way_is_finished_by_a_rerun(make, rng, tmp_path, monkeypatch):
    db, records = _saved(make, rng, tmp_path / "idx")
    _killed_removal(make, tmp_path, monkeypatch)
    cut = SearchIndex.load(tmp_path / "idx")
    if make.backend == "faiss":
        assert len(cut) == N and cut.pending_removal == set()  # the old generation is in force
    else:  # journalled: hidden at once, though 3 of the 5 are still in the collection
        assert cut.pending_removal == set(GONE) and len(cut) == N - len(GONE)
        assert len(cut._client.get(cut.collection, ids=GONE)) == 3
        assert not set(GONE) & set(itertools.chain(*keys_of(cut.search(db[[3, 10, 42]], k=20))))
    remove_items(tmp_path / "idx", GONE)  # the same command again
    final = SearchIndex.load(tmp_path / "idx")
    assert final.pending_removal == set() and len(final) == N - len(GONE)
    kept = sorted(r["key"] for r in records if r["key"] not in GONE)
    assert sorted(e["key"] for e in final.entries()) == kept
    if make.backend == "milvus":
        assert final._client.get(final.collection, ids=GONE) == []
        assert "removing" not in json.loads((tmp_path / "idx" / "meta.json").read_text())


def test_index_remove_cli(tmp_path, rng, capsys):
    emb = tmp_path / "emb"
    manifest = []
    for i in range(20):
        rel = f"{'a' if i < 10 else 'b/c'}/item{i:03d}"
        (emb / rel).parent.mkdir(parents=True, exist_ok=True)
        np.save(emb / f"{rel}.npy", rng.standard_normal((1, 8)).astype(np.float32))
        manifest.append(manifest_record(f"{rel}.mid", f"{rel}.npy", "symbolic"))
    write_manifest(emb, manifest)
    idx = str(tmp_path / "idx")
    assert main(["index", str(tmp_path / "emb"), idx, "--quiet"]) == 0
    # as Windows Notepad writes a list: a byte-order mark and CRLF line ends
    (tmp_path / "more.txt").write_bytes("\ufeffa/item002\r\n\r\nb/c/item015.mid\r\n".encode())
    capsys.readouterr()
    more = str(tmp_path / "more.txt")
    assert main(["index-remove", "a/item001", "a/item000.mid", idx, "--from", more]) == 0
    assert "faiss index: 4 removed, 16 left" in capsys.readouterr().err
    # the same removal again (a script's rerun) passes over what it removed before
    meta = (tmp_path / "idx" / "meta.json").read_bytes()
    assert main(["index-remove", "a/item001", "a/item000.mid", idx, "--from", more]) == 0
    err = capsys.readouterr().err
    assert "0 removed, 16 left" in err and "4 removed before, left as they are (e.g. a/item001)" in err
    assert (tmp_path / "idx" / "meta.json").read_bytes() == meta
    assert main(["index-remove", "a/item001", "a/item003", "no/such", idx]) == 2  # one unknown name
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and err.count("\n") == 0 and "1 not indexed (no/such;" in err
    assert json.loads((tmp_path / "idx" / "meta.json").read_text())["count"] == 16  # item003 stays
    # their embeddings are still in the folder: neither an append nor a sync brings them back
    for mode in ("--append", "--sync"):
        assert main(["index", str(emb), idx, mode, "--quiet"]) == 0
        err = capsys.readouterr().err
        assert "of 16 vectors (0 added" in err and "4 left out: removed with index-remove" in err
    assert main(["index-remove", "--undo", "a/item001", "a/item000.mid", idx]) == 0
    assert "2 readmitted" in capsys.readouterr().err
    assert main(["index", str(emb), idx, "--append", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "of 18 vectors (2 added" in err and "2 left out" in err
    assert main(["index-remove", "--undo", "a/item001", idx]) == 2  # indexed again: not withdrawn
    assert "1 not removed by index-remove (a/item001)" in capsys.readouterr().err
    # a sync forgets withdrawn items that left the folder
    (emb / "a" / "item002.npy").unlink()
    assert main(["index", str(emb), idx, "--sync", "--quiet"]) == 0
    assert "1 left out" in capsys.readouterr().err  # b/c/item015 only
    assert SearchIndex.load(idx).withdrawn == {"b/c/item015": "b/c/item015.mid"}


def test_withdrawn_items_are_recorded_on_either_back_end(make, rng, tmp_path):
    from clamp3.index.removal import readmit_items

    _saved(make, rng, tmp_path / "idx")
    remove_items(tmp_path / "idx", ["item0003", "music/item0010.mid"])
    withdrawn = SearchIndex.load(tmp_path / "idx").withdrawn
    assert withdrawn == {"item0003": "music/item0003.mid", "item0010": "music/item0010.mid"}
    assert readmit_items(tmp_path / "idx", ["music/item0003.mid"]).removed == ["item0003"]  # by path
    assert SearchIndex.load(tmp_path / "idx").withdrawn == {"item0010": "music/item0010.mid"}
    with pytest.raises(InputError, match="1 not removed by index-remove") as info:
        readmit_items(tmp_path / "idx", ["item0010", "item0004"])  # item0004 is indexed
    assert info.value.path == str(tmp_path / "idx")
    assert SearchIndex.load(tmp_path / "idx").withdrawn == {"item0010": "music/item0010.mid"}


def test_a_sync_after_a_killed_removal_finishes_it_and_keeps_what_the_folder_has(
    make, rng, tmp_path, monkeypatch
):
    """The folder still holds GONE[0] (so the sync writes it again) but not the other four."""
    db, records = _saved(make, rng, tmp_path / "idx")
    _killed_removal(make, tmp_path, monkeypatch)
    index = SearchIndex.load(tmp_path / "idx")
    folder = [i for i, r in enumerate(records) if r["key"] not in GONE[1:]]
    vectors, rows = db[folder], [records[i] for i in folder]
    apply_sync(index, vectors, rows, plan_sync(index, vectors, rows))
    index.save()
    final = SearchIndex.load(tmp_path / "idx")
    assert final.pending_removal == set() and sorted(e["key"] for e in final.entries()) == [
        records[i]["key"] for i in folder
    ]
    assert keys_of(final.search(db[3], k=1)) == [["item0003"]]
    if make.backend == "milvus":
        assert sorted(r["key"] for r in final._client.get(final.collection, ids=GONE)) == ["item0003"]

"""Extending the index (``index --append``) and reloading it while a live server answers a
steady stream of requests: no request fails, the new items become searchable and servable, old
snapshots stay usable. The service never writes the index itself."""

from __future__ import annotations

import shutil
import threading

import httpx
import pytest
from serve_support import app_for, client_for, library, live_server, make_app, tiny_model  # noqa: F401

pytest.importorskip("fastapi")

AUTH = {"authorization": "Bearer tok"}


def _hammer(base: str, stop: threading.Event, outcomes: list, worker: int) -> None:
    """Search, page, look up and stream until ``stop``; record (status, path) of every call."""
    queries = ["a melancholy waltz", "ein Volkslied", "一首民歌", "tango", f"worker {worker}"]
    with httpx.Client(base_url=base, timeout=30) as http:
        n = 0
        while not stop.is_set():
            try:
                q = queries[n % len(queries)]
                found = http.get("/api/search", params={"q": q, "k": 5, "offset": n % 3})
                outcomes.append((found.status_code, "search"))
                for r in found.json()["results"][:2]:
                    outcomes.append((http.get(r["similar_url"], params={"k": 3}).status_code, "similar"))
                    outcomes.append((http.get(f"/api/items/{r['id']}").status_code, "item"))
                outcomes.append((http.get("/api/health").status_code, "health"))
            except Exception as exc:  # a dropped connection is a failure too
                outcomes.append((repr(exc), "exception"))
            n += 1


def _add_media(folder, library, names: list[str]) -> None:  # noqa: F811
    folder.mkdir(parents=True)
    for name in names:
        shutil.copy(library.media / name, folder / name.split("/")[-1])


def _append(lib, model) -> int:
    """The documented pipeline: embed the media root again (a rerun embeds only new files) and
    ``index --append``; returns the rows added."""
    from clamp3.embed_folder import embed_folder
    from clamp3.index import build_index

    embed_folder(model, lib.media, lib.emb, show_progress=False, model_id=str(lib.model_dir))
    return build_index(lib.emb, lib.idx, append=True, progress=False).added


def test_append_and_reload_while_serving(library, tiny_model, tmp_path):  # noqa: F811
    lib = library.copy(tmp_path / "lib")
    outcomes: list = []
    stop = threading.Event()
    with app_for(lib, tiny_model, admin_token="tok") as app, live_server(app) as base:
        workers = [threading.Thread(target=_hammer, args=(base, stop, outcomes, i)) for i in range(4)]
        for w in workers:
            w.start()
        try:
            _add_media(lib.media / "new", library, ["midi/m21_test01.mid", "audio/sines_16k_mono_3s7.wav"])
            (lib.media / "new" / "tango.txt").write_text("a brand new tango for bandoneon", encoding="utf-8")
            assert _append(lib, tiny_model) == 3
            reloaded = httpx.post(f"{base}/api/admin/reload", headers=AUTH, timeout=60).json()
            assert reloaded == {"items_before": 10, "items": 13, "added": 3, "removed": 0}
            _add_media(lib.media / "more", library, ["scores/bach_bwv66_6.mxl", "midi/m21_test08.mtf"])
            assert _append(lib, tiny_model) == 2
            reloaded = httpx.post(f"{base}/api/admin/reload", headers=AUTH, timeout=60).json()
            assert reloaded["items_before"] == 13 and reloaded["items"] == 15
            for _ in range(3):  # repeated swaps under load
                assert httpx.post(f"{base}/api/admin/reload", headers=AUTH, timeout=60).status_code == 200
        finally:
            stop.set()
            for w in workers:
                w.join(timeout=60)
        failures = [o for o in outcomes if o[0] != 200]
        assert not failures, failures[:10]
        assert len(outcomes) >= 40, len(outcomes)  # the load really overlapped the swaps

        hits = httpx.get(f"{base}/api/search", params={"q": "a brand new tango for bandoneon", "k": 1}).json()
        assert hits["results"][0]["path"] == "new/tango.txt"
        served = httpx.get(f"{base}{hits['results'][0]['file_url']}")
        assert served.text == "a brand new tango for bandoneon"
        health = httpx.get(f"{base}/api/health").json()
        assert health["items"] == 15 and health["modalities"]["symbolic"] == 9


def test_in_flight_snapshot_survives_a_swap(library, tiny_model, tmp_path):  # noqa: F811
    lib = library.copy(tmp_path / "lib")
    with app_for(lib, tiny_model) as app:
        catalog = app.state.catalog
        held = catalog.snapshot  # what a request in flight holds
        _add_media(lib.media / "extra", library, ["midi/m21_k525short.mid"])
        assert _append(lib, tiny_model) == 1
        assert catalog.reload() == {"items_before": 10, "items": 11, "added": 1, "removed": 0}
        assert catalog.snapshot is not held and catalog.snapshot.size == 11
        assert held.size == 10 and len(held.index) == 11  # the old snapshot was never mutated
        vector = catalog.encoder.text("waltz")
        old = catalog._rank(held, vector, 20, 0, None)
        assert old.total == 10 and {r.id for r in old.results} <= set(held.rows)
        assert catalog.search_vector(vector, 20, 0, None).total == 11


def test_a_reload_tells_removed_and_added_items_apart(library, tiny_model, tmp_path):  # noqa: F811
    from clamp3.index.removal import remove_items

    lib = library.copy(tmp_path / "lib")
    with app_for(lib, tiny_model) as app:
        catalog = app.state.catalog
        gone = catalog.snapshot.index.entry(0)["path"]
        assert len(remove_items(lib.idx, [gone]).removed) == 1
        _add_media(lib.media / "extra", library, ["midi/m21_k525short.mid"])
        assert _append(lib, tiny_model) == 1
        # the net change is 0; the ids say one left and one came
        assert catalog.reload() == {"items_before": 10, "items": 10, "added": 1, "removed": 1}


def test_a_broken_index_on_disk_keeps_the_old_one_serving(library, tiny_model, tmp_path):  # noqa: F811
    lib = library.copy(tmp_path / "lib")
    with client_for(make_app(lib, tiny_model, admin_token="tok")) as client:
        (lib.idx / "index.faiss").write_bytes(b"not a faiss index")
        refused = client.post("/api/admin/reload", headers=AUTH)
        assert refused.status_code == 422 and "index.faiss" in refused.json()["message"]
        assert client.get("/api/health").json()["items"] == 10
        assert client.get("/api/search", params={"q": "waltz"}).status_code == 200

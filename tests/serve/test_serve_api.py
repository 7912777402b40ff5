"""The search API over a small library embedded and indexed with the tiny model: every endpoint,
its numbers checked against the library (cosines, ranks, bytes), not only its status codes."""

from __future__ import annotations

import json
import logging
import threading

import numpy as np
import pytest
from serve_support import QUERY_TEXT, client_for, library, make_app, tiny_model  # noqa: F401

from clamp3 import Clamp3Pipeline

pytest.importorskip("fastapi")


@pytest.fixture(scope="module")
def client(library, tiny_model):  # noqa: F811
    with client_for(make_app(library, tiny_model)) as c:
        yield c


def _ids_by_path(client) -> dict[str, str]:
    results = client.get("/api/search", params={"q": "anything", "k": 100}).json()["results"]
    return {r["path"]: r["id"] for r in results}


def _stored(library, path: str) -> np.ndarray:  # noqa: F811
    vector = np.load(library.emb / (path.rsplit(".", 1)[0] + ".npy"))[0]
    return vector / np.linalg.norm(vector)


def test_health_counts_the_library(client):
    body = client.get("/api/health").json()
    assert body["status"] == "ok"
    assert body["items"] == 10  # the symlink escaping the media root is not an item
    assert body["modalities"] == {"symbolic": 6, "audio": 2, "text": 2}
    assert body["text_search"] is True and body["dimension"] == 32


def test_text_search_scores_are_cosines_with_the_stored_vectors(client, library, tiny_model):  # noqa: F811
    body = client.get("/api/search", params={"q": QUERY_TEXT, "k": 5}).json()
    results = body["results"]
    assert [r["rank"] for r in results] == [1, 2, 3, 4, 5]
    assert results[0]["path"] == "texts/waltz.txt"  # the text item holding exactly the query
    query = Clamp3Pipeline(tiny_model).encode_texts([QUERY_TEXT])[0]
    for r in results:
        assert r["score"] == pytest.approx(float(query @ _stored(library, r["path"])), abs=1e-5)
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    assert results[0]["file_url"] == f"/api/items/{results[0]['id']}/file"


def test_post_search_equals_get_search(client):
    got = client.get("/api/search", params={"q": "Volkslied", "k": 4, "modality": "symbolic"}).json()
    posted = client.post("/api/search", json={"q": "Volkslied", "k": 4, "modality": "symbolic"}).json()
    assert posted["results"] == got["results"]


def test_pages_concatenate_to_the_full_ranking(client):
    full = client.get("/api/search", params={"q": "una canción", "k": 100}).json()
    assert full["total"] == 10 and len(full["results"]) == 10
    pages = [
        client.get("/api/search", params={"q": "una canción", "k": 4, "offset": o}).json() for o in (0, 4, 8)
    ]
    assert [r["id"] for p in pages for r in p["results"]] == [r["id"] for r in full["results"]]
    assert [r["rank"] for r in pages[2]["results"]] == [9, 10]
    past = client.get("/api/search", params={"q": "una canción", "k": 4, "offset": 20}).json()
    assert past["results"] == [] and past["total"] == 10


@pytest.mark.parametrize("modality, count", [("audio", 2), ("symbolic", 6), ("text", 2)])
def test_modality_filter(client, modality, count):
    body = client.get("/api/search", params={"q": "一首欢快的民歌", "k": 50, "modality": modality}).json()
    assert body["total"] == count
    assert {r["modality"] for r in body["results"]} == {modality}


@pytest.mark.parametrize(
    "name, content_type", [("midi/m21_k525short.mid", "audio/midi"), ("audio/sines_16k_mono_3s7.wav", "audio/wav"),
                           ("scores/bach_bwv66_6.mxl", "application/octet-stream")]
)  # fmt: skip
def test_file_search_finds_the_same_file_first(client, library, name, content_type):  # noqa: F811
    data = (library.media / name).read_bytes()
    upload = ("query" + name[name.rfind(".") :], data, content_type)
    body = client.post("/api/search/file", files={"file": upload}, params={"k": 3}).json()
    assert body["results"][0]["path"] == name
    assert body["results"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    more = client.get(f"/api/uploads/{body['upload_id']}/similar", params={"k": 3, "offset": 3}).json()
    assert [r["rank"] for r in more["results"]] == [4, 5, 6]


def test_more_like_this_leaves_the_item_out(client, library):  # noqa: F811
    ids = _ids_by_path(client)
    item = ids["scores/bach_bwv66_6.mxl"]
    body = client.get(f"/api/items/{item}/similar", params={"k": 20}).json()
    assert item not in [r["id"] for r in body["results"]]
    assert body["total"] == 9 and len(body["results"]) == 9
    anchor = _stored(library, "scores/bach_bwv66_6.mxl")
    for r in body["results"]:
        assert r["score"] == pytest.approx(float(anchor @ _stored(library, r["path"])), abs=1e-5)
    audio_only = client.get(f"/api/items/{item}/similar", params={"modality": "audio"}).json()
    assert audio_only["total"] == 2 and {r["modality"] for r in audio_only["results"]} == {"audio"}


def test_item_metadata(client):
    ids = _ids_by_path(client)
    text = client.get(f"/api/items/{ids['texts/lied.txt']}").json()
    assert text["text"] == "ein fröhliches Volkslied in G-Dur" and text["available"] is True
    assert text["kind"] == "text" and text["render_url"] is None and text["size_bytes"] == 34
    score = client.get(f"/api/items/{ids['scores/bach_bwv66_6.mxl']}").json()
    assert (
        score["kind"] == "score" and score["modality"] == "symbolic" and score["key"] == "scores/bach_bwv66_6"
    )
    assert score["render_url"].endswith("/render")


def test_audio_streams_with_ranges(client, library):  # noqa: F811
    url = f"/api/items/{_ids_by_path(client)['audio/sines_16k_mono_3s7.wav']}/file"
    data = (library.media / "audio/sines_16k_mono_3s7.wav").read_bytes()
    full = client.get(url)
    assert full.status_code == 200 and full.content == data
    assert full.headers["accept-ranges"] == "bytes" and full.headers["content-type"] == "audio/wav"
    assert full.headers["content-disposition"].startswith("inline")
    for header, start, end in [("bytes=0-99", 0, 99), ("bytes=1000-", 1000, len(data) - 1),
                               ("bytes=-500", len(data) - 500, len(data) - 1), ("bytes=10-99999999", 10, len(data) - 1)]:  # fmt: skip
        part = client.get(url, headers={"Range": header})
        assert part.status_code == 206, header
        assert part.headers["content-range"] == f"bytes {start}-{end}/{len(data)}"
        assert part.content == data[start : end + 1]
        assert int(part.headers["content-length"]) == end - start + 1
    head = client.head(url, headers={"Range": "bytes=5-9"})
    assert head.status_code == 206 and head.headers["content-length"] == "5" and head.content == b""
    assert client.get(url, headers={"Range": "bytes=0-1,5-9"}).status_code == 200  # multi-range: whole file
    for bad in ("bytes=999999999-", "bytes=50-10", "bytes=abc", "bytes=-0", "bytes=-"):
        refused = client.get(url, headers={"Range": bad})
        assert refused.status_code == 416, bad
        assert refused.headers["content-range"] == f"bytes */{len(data)}"
        assert refused.json()["error"] == "range_not_satisfiable"
    assert "ends before it starts" in client.get(url, headers={"Range": "bytes=50-10"}).json()["message"]


def test_midi_download_is_an_attachment(client, library):  # noqa: F811
    url = f"/api/items/{_ids_by_path(client)['midi/m21_test01.mid']}/file"
    response = client.get(url)
    assert response.content == (library.media / "midi/m21_test01.mid").read_bytes()
    assert response.headers["content-type"] == "audio/midi"
    assert response.headers["content-disposition"].startswith('attachment; filename="m21_test01.mid"')


@pytest.mark.parametrize(
    "path, marker",
    [("scores/bach_bwv66_6.mxl", b"<svg"), ("scores/foster_brown_hair.abc", b"<svg"),
     ("scores/oneills_0003_little_heathy_hill.musicxml", b"<svg"), ("midi/m21_k525short.mid", b"<rect"),
     ("midi/m21_test08.mtf", b"<rect")],
)  # fmt: skip
def test_render_scores_and_piano_rolls(client, path, marker):
    url = f"/api/items/{_ids_by_path(client)[path]}/render"
    response = client.get(url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/svg+xml"
    assert response.headers["x-page-count"] == "1"
    assert marker in response.content and b"<script" not in response.content
    assert "default-src 'none'" in response.headers["content-security-policy"]
    missing_page = client.get(url, params={"page": 2})
    assert missing_page.status_code == 404 and "page 2" in missing_page.json()["message"]


def test_render_reads_a_score_by_content_and_text_as_it_was_embedded(parity_dir, tmp_path):
    """A compressed score saved as .xml, a plain one saved as .mxl, an ABC with a byte-order
    mark and a UTF-16 MTF draw as their plain forms do (each failed or drew garbage)."""
    import shutil
    import zipfile

    from clamp3.serve.render import Renderer

    mxl = parity_dir / "inputs" / "musicxml" / "bach_bwv66_6.mxl"
    shutil.copyfile(mxl, tmp_path / "zipped.xml")
    with zipfile.ZipFile(mxl) as archive:
        member = next(n for n in archive.namelist() if n.endswith(".xml") and not n.startswith("META"))
        (tmp_path / "plain.mxl").write_bytes(archive.read(member))
    abc = (parity_dir / "prep" / "abc_interleaved" / "foster_brown_hair.abc").read_bytes()
    (tmp_path / "bom.abc").write_bytes(b"\xef\xbb\xbf" + abc)
    mtf = (parity_dir / "prep" / "mtf" / "m21_test08.mtf").read_text(encoding="utf-8")
    (tmp_path / "wide.mtf").write_bytes(mtf.encode("utf-16"))
    renderer = Renderer()
    proper = renderer.render(mxl)
    for name in ("zipped.xml", "plain.mxl"):  # (verovio's element ids differ from run to run)
        drawn = renderer.render(tmp_path / name)
        assert drawn.pages == proper.pages and len(drawn.svg) == pytest.approx(len(proper.svg), rel=0.01)
    assert b"<svg" in renderer.render(tmp_path / "bom.abc").svg
    assert b"<rect" in renderer.render(tmp_path / "wide.mtf").svg


def test_render_refuses_audio_and_text(client):
    ids = _ids_by_path(client)
    for path in ("audio/sines_16k_mono_3s7.wav", "texts/lied.txt"):
        response = client.get(f"/api/items/{ids[path]}/render")
        assert response.status_code == 422 and "only scores and MIDI" in response.json()["message"]


def test_openapi_schema_and_page(client):
    schema = client.get("/openapi.json").json()
    for path in ("/api/health", "/api/search", "/api/search/file", "/api/items/{item_id}", "/api/items/{item_id}/file",
                 "/api/items/{item_id}/render", "/api/items/{item_id}/similar", "/api/admin/reload"):  # fmt: skip
        assert path in schema["paths"], path
    assert "/api/admin/extend" not in schema["paths"]  # the index is extended by `clamp3 index --append`
    page = client.get("/")
    assert page.status_code == 200 and b'id="q"' in page.content
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for name in ("app.js", "app.css", "favicon.svg"):
        assert client.get(f"/static/{name}").status_code == 200


def test_access_log_lines_are_structured(client, caplog):
    from clamp3.serve.logs import JsonFormatter

    with caplog.at_level(logging.INFO, logger="clamp3.serve.access"):
        response = client.get(
            "/api/search", params={"q": "private words", "k": 1}, headers={"X-Request-ID": "abc-123"}
        )
    assert response.headers["x-request-id"] == "abc-123"
    record = next(r for r in caplog.records if r.name == "clamp3.serve.access")
    line = json.loads(JsonFormatter().format(record))
    assert line["method"] == "GET" and line["path"] == "/api/search" and line["status"] == 200
    assert line["request_id"] == "abc-123" and line["duration_ms"] >= 0
    assert "private" not in json.dumps(line)  # the query string is never logged
    fresh = client.get("/api/health", headers={"X-Request-ID": "not a valid id!"})
    assert len(fresh.headers["x-request-id"]) == 32


def test_batched_text_vectors_equal_one_at_a_time(tiny_model):  # noqa: F811
    from clamp3.serve.encoder import QueryEncoder

    queries = [QUERY_TEXT, "ein fröhliches Volkslied", "一首欢快的民歌", "x", "a" * 600, "/etc/passwd"]
    encoder = QueryEncoder(tiny_model, cache_size=1)
    try:
        got: dict[str, np.ndarray] = {}
        threads = [
            threading.Thread(target=lambda q=q: got.__setitem__(q, encoder.text(q))) for q in queries * 3
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        encoder.close()
    for q in queries:
        # Plain strings: "/etc/passwd" must be embedded as those 11 characters, not as the file.
        ids = encoder.pipeline.tokenizer.encode(q)
        expected = tiny_model.embed_text_ids([ids])[0]
        np.testing.assert_allclose(got[q], expected / np.linalg.norm(expected), atol=1e-5)


def test_a_slow_upload_does_not_block_text_search(library, tiny_model, monkeypatch):  # noqa: F811
    """File conversion runs outside the model lock: while one upload is stuck in its converter,
    text searches still complete (no timing involved: the upload waits on an event)."""
    from concurrent.futures import ThreadPoolExecutor

    import clamp3.serve.encoder as encoder_module

    app = make_app(library, tiny_model)
    encoder = app.state.catalog.encoder
    entered, release = threading.Event(), threading.Event()
    original = encoder._prepare

    def stuck(path):
        entered.set()
        release.wait(timeout=60)
        return original(path)

    monkeypatch.setattr(encoder, "_prepare", stuck)
    data = (library.media / "midi/m21_test01.mid").read_bytes()
    with client_for(app) as client, ThreadPoolExecutor(1) as pool:
        upload = pool.submit(client.post, "/api/search/file", files={"file": ("q.mid", data)})
        assert entered.wait(timeout=60)
        assert client.get("/api/search", params={"q": "a search during an upload"}).status_code == 200
        assert not upload.done()
        release.set()
        assert upload.result(timeout=60).status_code == 200
        monkeypatch.setattr(encoder_module, "MAX_QUERY_ITEMS", 4)
        cached = client.post("/api/search/file", files={"file": ("q.mid", data)}, params={"k": 2})
        assert cached.status_code == 200  # the same bytes again: answered from the upload cache
        other = (library.media / "midi/m21_k525short.mid").read_bytes()
        refused = client.post("/api/search/file", files={"file": ("q.mid", other)})
        assert refused.status_code == 422 and "too long" in refused.json()["message"]


def test_a_file_name_that_is_not_utf8_is_served_under_its_id(tmp_path, tiny_model_dir, tiny_model):  # noqa: F811
    """The service used to refuse to start: the name's surrogate escapes broke the item id."""
    import os

    from clamp3.embed_folder import embed_folder
    from clamp3.index import build_index
    from clamp3.serve.service import build_app
    from clamp3.serve.settings import LOCAL_HOSTS, Settings

    media = tmp_path / "media"
    media.mkdir()
    (media / os.fsdecode(b"latin\xe9.txt")).write_text("a latin waltz", encoding="utf-8")
    (media / "plain.txt").write_text("a plain march", encoding="utf-8")
    embed_folder(tiny_model, media, tmp_path / "emb", show_progress=False, model_id=str(tiny_model_dir))
    build_index(tmp_path / "emb", tmp_path / "idx", progress=False)
    app = build_app(tmp_path / "idx", media, tiny_model, Settings(allowed_hosts=LOCAL_HOSTS | {"testserver"}))
    with client_for(app) as c:
        assert c.get("/api/health").json()["items"] == 2
        results = c.get("/api/search", params={"q": "waltz", "k": 5}).json()["results"]
        latin = next(r for r in results if r["path"] != "plain.txt")
        assert latin["path"] == "latin\\udce9.txt"  # shown as the CLI prints it (printable), reached by id
        served = c.get(latin["file_url"])
        assert served.status_code == 200 and served.content == b"a latin waltz"
        assert "filename*=UTF-8''latin%5Cudce9.txt" in served.headers["content-disposition"]
        assert c.get(f"/api/items/{latin['id']}").json()["name"] == "latin\\udce9.txt"
        assert c.get(f"/api/items/{latin['id']}/similar").status_code == 200

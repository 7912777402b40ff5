"""Every bad request gets a 4xx with a JSON message, never a 500, and nothing outside the index
is ever served: oversized and mistyped uploads, unknown ids, path traversal (plain, encoded,
double-encoded) through a real uvicorn server, crafted index records, symlink escapes,
malformed JSON, foreign Host headers and the admin token."""

from __future__ import annotations

import io
import logging
import os

import numpy as np
import pytest
from serve_support import (  # noqa: F401
    SECRET,
    app_for,
    client_for,
    library,
    live_server,
    make_app,
    raw_get,
    tiny_model,
)

pytest.importorskip("fastapi")

SMALL_UPLOAD = 4096


@pytest.fixture(scope="module")
def app(library, tiny_model):  # noqa: F811
    return make_app(library, tiny_model, max_upload_bytes=SMALL_UPLOAD, admin_token="s3cret-token")


@pytest.fixture(scope="module")
def client(app):
    with client_for(app) as c:
        yield c


def _is_json_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert body["message"] and body["request_id"]
    if code is not None:
        assert body["error"] == code
    return body


def _small_midi(library) -> bytes:  # noqa: F811
    return (library.media / "midi/m21_test01.mid").read_bytes()


# ----------------------------------------------------------------------------- uploads
def test_oversized_upload_is_413(client, library):  # noqa: F811
    big = b"MThd" + os.urandom(SMALL_UPLOAD * 3)
    body = _is_json_error(client.post("/api/search/file", files={"file": ("q.mid", big)}), 413, "too_large")
    assert "limit" in body["message"]


def test_oversized_chunked_upload_is_cut_off(client):
    """No Content-Length (chunked transfer): the byte count stops it."""
    boundary = "b0undary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="q.mid"\r\n\r\nMThd'.encode()
    )

    def stream():
        yield head
        for _ in range(64):
            yield b"\x00" * 1024
        yield f"\r\n--{boundary}--\r\n".encode()

    response = client.post(
        "/api/search/file",
        content=stream(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    _is_json_error(response, 413, "too_large")


def test_file_just_over_the_limit_is_413_even_within_the_body_allowance(client):
    """The multipart allowance must not let a file of limit + a few bytes through."""
    payload = b"MThd" + b"\x00" * (SMALL_UPLOAD - 2)
    _is_json_error(client.post("/api/search/file", files={"file": ("q.mid", payload)}), 413, "too_large")


def test_oversized_json_body_is_413(client):
    _is_json_error(client.post("/api/search", json={"q": "x" * 200_000}), 413, "too_large")


@pytest.mark.parametrize(
    "name, data",
    [("q.exe", b"MZ\x90\x00 executable"), ("q.mid", b"<html><script>alert(1)</script></html>"),
     ("q.wav", b"MThd\x00\x00\x00\x06"), ("q.xml", b"<html><body>not a score</body></html>"),
     ("q.mxl", b"not a zip"), ("q.abc", b"\x00\x01\x02binary"), ("q.mtf", b"hello"), ("q", b"MThd"),
     ("q.mid", b""), ("../../etc/q.npy", b"\x93NUMPY"), ("q.txt", b"text is searched with /api/search")],
)  # fmt: skip
def test_wrong_upload_types_are_415(client, name, data):
    response = client.post("/api/search/file", files={"file": (name, data, "audio/midi")})
    _is_json_error(response, 415, "unsupported_type")


def test_damaged_file_of_the_right_type_is_422(client):
    broken = b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\xff\xff\xff\xff garbage"
    body = _is_json_error(client.post("/api/search/file", files={"file": ("q.mid", broken)}), 422)
    assert "cannot" in body["message"]


def test_missing_file_field_is_422(client):
    _is_json_error(client.post("/api/search/file", data={"other": "x"}), 422, "invalid_request")


def test_uploads_leave_no_file_behind(app, client, library):  # noqa: F811
    area = app.state.uploads.base
    assert not str(area.resolve()).startswith(str(library.media.resolve()))
    assert client.post("/api/search/file", files={"file": ("q.mid", _small_midi(library))}).status_code == 200
    client.post("/api/search/file", files={"file": ("q.mid", b"MThd broken")})
    assert list(area.iterdir()) == []


# ----------------------------------------------------------------------------- ids and traversal
def test_unknown_and_malformed_ids(client):
    _is_json_error(client.get("/api/items/0123456789abcdef"), 404, "not_found")
    _is_json_error(client.get("/api/items/0123456789abcdef/file"), 404, "not_found")
    _is_json_error(client.get("/api/items/0123456789abcdef/similar"), 404, "not_found")
    _is_json_error(client.get(f"/api/uploads/{'0' * 32}/similar"), 404, "not_found")
    for bad in ("XYZ", "0123456789ABCDEF", "0123456789abcde", "passwd"):
        _is_json_error(client.get(f"/api/items/{bad}"), 422, "invalid_request")


TRAVERSALS = [
    "/api/items/../../../../etc/passwd",
    "/api/items/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/api/items/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/api/items/%2e%2e/%2e%2e/etc/passwd",
    "/api/items/..%252f..%252fetc%252fpasswd",
    "/api/items/%252e%252e%252f%252e%252e%252fetc%252fpasswd",
    "/api/items/..%5c..%5cetc%5cpasswd",
    "/api/items/%c0%ae%c0%ae%c0%afetc%c0%afpasswd",
    "/api/items/0123456789abcdef/../../../etc/passwd",
    "/api/items/..%2f..%2f..%2fetc%2fpasswd/file",
    "/api/items/%2fetc%2fpasswd/file",
    "/api/items/%00/file",
    "/static/../../../../etc/passwd",
    "/static/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/static/%2e%2e%2f%2e%2e%2fapp.py",
    "/static/..%252f..%252fapp.py",
    "/../../../../etc/passwd",
    "/%2e%2e/%2e%2e/etc/passwd",
    "//etc/passwd",
    "/api/items/....//....//etc/passwd",
]


def test_traversal_attempts_through_uvicorn(app):
    with live_server(app) as base:
        for raw in TRAVERSALS:
            status, body = raw_get(base, raw)
            assert 400 <= status < 500, (raw, status)
            assert b"root:" not in body and SECRET.encode() not in body, raw
            assert b'"error"' in body, raw


def _craft_index(lib, records: list[str]) -> None:
    from clamp3.index import SearchIndex

    index = SearchIndex.load(lib.idx)
    vectors = np.random.default_rng(0).normal(size=(len(records), index.dim)).astype(np.float32)
    index.add(
        vectors, [{"key": f"crafted/{i}", "path": p, "modality": "audio"} for i, p in enumerate(records)]
    )
    index.save()


ESCAPES = ["../outside/secret.txt", "/etc/passwd", "{outside}/secret.txt", "texts/../../outside/secret.txt",
           "linked/secret.txt", "texts/escape.txt", "texts\\..\\..\\outside\\secret.txt", "a\x00b.txt"]  # fmt: skip


def _hidden_ids() -> list[str]:
    from clamp3.serve.catalog import item_id

    return [item_id(f"crafted/{i}") for i in range(len(ESCAPES))] + [item_id("texts/escape")]


def test_rows_leaving_the_media_root_are_never_ranked_or_served(library, tiny_model, tmp_path, caplog):  # noqa: F811
    """Crafted records (absolute, ``..``, backslash, NUL, a symlinked folder, a symlinked file)
    and the fixture's escaping symlink: left out at load with a warning, so their vectors (one is
    the embedding of the secret) never answer a search, and their ids serve nothing."""
    lib = library.copy(tmp_path)
    (lib.media / "linked").symlink_to(lib.outside, target_is_directory=True)
    (lib.media / "texts" / "alias.txt").symlink_to(lib.media / "texts" / "lied.txt")
    escapes = [p.format(outside=lib.outside) for p in ESCAPES]
    _craft_index(lib, [*escapes, "texts/alias.txt", "texts/missing.txt"])
    with caplog.at_level(logging.WARNING, logger="clamp3.serve.catalog"), app_for(lib, tiny_model) as app:
        warned = [r for r in caplog.records if "outside the media root" in r.getMessage()]
        assert warned and warned[-1].fields["rows_left_out"] == len(escapes) + 1
        assert warned[-1].getMessage().startswith(f"{len(escapes) + 1} index rows (e.g. '")  # in words
        missing = [r for r in caplog.records if "missing under the media root" in r.getMessage()]
        assert [(r.fields["missing"], r.fields["first"]) for r in missing] == [(1, "texts/missing.txt")]
        with client_for(app) as c:
            found = c.get("/api/search", params={"q": SECRET, "k": 100}).json()
            paths = {r["path"] for r in found["results"]}
            assert found["total"] == 12 and len(paths) == 12  # 10 items + alias + missing
            assert not paths & set(escapes)
            for identifier in _hidden_ids():
                for suffix in ("", "/file", "/render", "/similar"):
                    _is_json_error(c.get(f"/api/items/{identifier}{suffix}"), 404, "not_found")
            for result in found["results"]:  # nor does any "more like this" list return them
                similar = c.get(result["similar_url"], params={"k": 100}).json()
                assert similar["total"] == 11 and not {r["path"] for r in similar["results"]} & set(escapes)
            by_path = {r["path"]: r for r in found["results"]}
            # An in-root symlink stays fine; a missing file stays listed, marked unavailable.
            assert c.get(by_path["texts/alias.txt"]["file_url"]).text == "ein fröhliches Volkslied in G-Dur"
            _is_json_error(c.get(by_path["texts/missing.txt"]["file_url"]), 404, "not_found")
            assert c.get(f"/api/items/{by_path['texts/missing.txt']['id']}").json()["available"] is False


def test_a_text_item_is_previewed_as_it_was_read_and_a_bad_one_without_the_server_path(
    library, tiny_model, tmp_path  # noqa: F811
):
    lib = library.copy(tmp_path)
    with app_for(lib, tiny_model) as app, client_for(app) as c:
        lied = next(r for r in c.get("/api/search", params={"q": "x", "k": 100}).json()["results"]
                    if r["path"] == "texts/lied.txt")  # fmt: skip
        path = lib.media / "texts" / "lied.txt"
        text = path.read_text(encoding="utf-8")
        path.write_bytes(text.encode("utf-16"))  # re-saved by a Windows tool: still the same words
        assert c.get(f"/api/items/{lied['id']}").json()["text"] == text
        path.write_bytes(text.encode("latin-1"))
        meta = c.get(f"/api/items/{lied['id']}").json()
        assert meta["available"] is False and meta["text"] is None
        assert meta["problem"].startswith("not UTF-8 text") and str(tmp_path) not in meta["problem"]


def test_an_escape_planted_while_serving_is_refused_then_left_out(library, tiny_model, tmp_path):  # noqa: F811
    lib = library.copy(tmp_path)
    with app_for(lib, tiny_model) as app, client_for(app) as c:
        lied = next(r for r in c.get("/api/search", params={"q": "x", "k": 100}).json()["results"]
                    if r["path"] == "texts/lied.txt")  # fmt: skip
        (lib.media / "texts" / "lied.txt").unlink()
        (lib.media / "texts" / "lied.txt").symlink_to(lib.outside / "secret.txt")
        # Before a reload the row is still listed, but its file is refused...
        response = c.get(lied["file_url"])
        _is_json_error(response, 403, "forbidden")
        assert SECRET not in response.text
        meta = c.get(f"/api/items/{lied['id']}").json()
        assert meta["available"] is False and meta["text"] is None and meta["problem"]
        # ...and the reload leaves it out of every search.
        assert app.state.catalog.reload()["items"] == 9
        _is_json_error(c.get(f"/api/items/{lied['id']}/similar"), 404, "not_found")
        paths = {r["path"] for r in c.get("/api/search", params={"q": SECRET, "k": 100}).json()["results"]}
        assert "texts/lied.txt" not in paths and len(paths) == 9


# ----------------------------------------------------------------------------- bodies and headers
@pytest.mark.parametrize(
    "body, content_type, status, code",
    [(b"{bad json", "application/json", 400, "malformed_json"), (b'{"q": "x",}', "application/json", 400, "malformed_json"),
     (b"[1, 2]", "application/json", 422, "invalid_request"), (b'{"q": 5}', "application/json", 422, "invalid_request"),
     (b'{"q": "x", "k": 0}', "application/json", 422, "invalid_request"), (b'{"q": "x", "extra": 1}', "application/json", 422, "invalid_request"),
     (b'{"q": ""}', "application/json", 422, "invalid_request"), (b'{"q": "   "}', "application/json", 422, "unprocessable"),
     (b"", "application/json", 422, "invalid_request"), (b'{"q": "x"}', "text/plain", 422, "invalid_request"),
     (b"\xff\xfe\x00", "application/json", 400, None),
     (b'{"q": "x", "k": true}', "application/json", 422, "invalid_request"), (b'{"q": "x", "k": "5"}', "application/json", 422, "invalid_request"),
     (b'{"q": "x", "k": 5.0}', "application/json", 422, "invalid_request"), (b'{"q": "x", "offset": false}', "application/json", 422, "invalid_request"),
     (b'{"q": "x", "k": 1000}', "application/json", 422, "invalid_request"), (b'{"q": "\\u0000"}', "application/json", 422, "unprocessable"),
     (b'{"q": " \\u200b\\t\\u0007 "}', "application/json", 422, "unprocessable")],
)  # fmt: skip
def test_malformed_json(client, body, content_type, status, code):
    response = client.post("/api/search", content=body, headers={"content-type": content_type})
    _is_json_error(response, status, code)


@pytest.mark.parametrize(
    "params",
    [{"q": ""}, {"q": "x", "k": 0}, {"q": "x", "k": 101}, {"q": "x", "offset": -1}, {"q": "x", "offset": 1000},
     {"q": "x", "modality": "video"}, {"q": "x" * 2001}, {}, {"q": "x", "k": "ten"}],
)  # fmt: skip
def test_bad_query_parameters_are_422(client, params):
    body = _is_json_error(client.get("/api/search", params=params), 422, "invalid_request")
    assert body["details"]


@pytest.mark.parametrize("q", ["\x00", " \t\n ", "\u200b\u200d", "\x1b\x07\x7f", "\u2028"])
def test_queries_without_visible_characters_are_422(client, q):
    _is_json_error(client.get("/api/search", params={"q": q}), 422, "unprocessable")


def test_render_page_out_of_bounds(client):
    results = client.get("/api/search", params={"q": "x", "k": 100, "modality": "symbolic"}).json()["results"]
    item = next(r for r in results if r["kind"] == "score")
    _is_json_error(client.get(item["render_url"], params={"page": 0}), 422)
    _is_json_error(client.get(item["render_url"], params={"page": 99}), 404)


def test_unknown_route_and_method(client):
    _is_json_error(client.get("/api/nothing"), 404, "not_found")
    _is_json_error(client.delete("/api/search"), 405, "method_not_allowed")
    _is_json_error(client.get("/static/secret.py"), 404, "not_found")


@pytest.mark.parametrize(
    "host",
    ["evil.example", "127.0.0.1.evil.example:8000", "127.0.0.1:evil.com", "127.0.0.1:8000:evil.com",
     "localhost:80a", "localhost:", "localhost:123456", "[::1]evil.com", "[::1]:8000:1", "::1", "127.0.0.1 evil.com",
     "localhost@evil.com", ""],
)  # fmt: skip
def test_foreign_host_header_is_refused(client, host):
    _is_json_error(client.get("/api/health", headers={"host": host}), 400, "bad_host")


@pytest.mark.parametrize(
    "host", ["localhost:8000", "LOCALHOST", "127.0.0.1", "[::1]:8000", "[::1]", "testserver"]
)
def test_local_host_headers_are_answered(client, host):
    assert client.get("/api/health", headers={"host": host}).status_code == 200


def test_security_headers(client):
    response = client.get("/api/health")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def test_admin_needs_the_token(client, library, tiny_model):  # noqa: F811
    _is_json_error(client.post("/api/admin/reload"), 401, "unauthorized")
    wrong = client.post("/api/admin/reload", headers={"authorization": "Bearer nope"})
    assert (
        _is_json_error(wrong, 401)["error"] == "unauthorized"
        and wrong.headers["www-authenticate"] == "Bearer"
    )
    assert (
        client.post("/api/admin/reload", headers={"authorization": "Bearer s3cret-token"}).status_code == 200
    )
    with client_for(make_app(library, tiny_model)) as no_admin:
        _is_json_error(
            no_admin.post("/api/admin/reload", headers={"authorization": "Bearer x"}), 403, "forbidden"
        )


def test_upload_area_must_be_outside_the_media_root(tmp_path):
    from clamp3.serve.uploads import UploadArea

    with pytest.raises(ValueError, match="inside the served folder"):
        UploadArea([tmp_path], parent=tmp_path)
    area = UploadArea([tmp_path / "media"], parent=tmp_path)
    assert oct(area.base.stat().st_mode & 0o777) == "0o700"
    with area.store(io.BytesIO(b"MThd" + b"\x00" * 10), ".mid", 100) as (path, digest):
        assert path.read_bytes().startswith(b"MThd") and len(digest) == 64
    assert list(area.base.iterdir()) == []
    area.close()


def test_each_domain_error_has_its_own_status_and_plain_http_errors_share_its_code():
    from clamp3.serve import errors

    kinds = errors.ServeError.__subclasses__()
    assert len({cls.status for cls in kinds}) == len(kinds) and len({cls.code for cls in kinds}) == len(kinds)
    assert all(400 <= cls.status < 600 and errors.code_of_status(cls.status) == cls.code for cls in kinds)
    assert errors.code_of_status(400) == "bad_request" and errors.code_of_status(405) is None
    assert errors.RangeNotSatisfiable("no", size=9).size == 9 and errors.NotFound("gone").status == 404

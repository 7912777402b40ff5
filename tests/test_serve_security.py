"""Every bad request gets a 4xx with a JSON message, never a 500, and nothing outside the index
is ever served: oversized and mistyped uploads, unknown ids, path traversal (plain, encoded,
double-encoded) through a real uvicorn server, crafted index records, symlink escapes,
malformed JSON, foreign Host headers and the admin token."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from serve_support import (  # noqa: F401
    SECRET,
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


def test_crafted_records_and_symlinks_are_never_served(library, tiny_model, tmp_path):  # noqa: F811
    lib = library.copy(tmp_path)
    (lib.media / "linked").symlink_to(lib.outside, target_is_directory=True)
    escapes = ["../outside/secret.txt", "/etc/passwd", str(lib.outside / "secret.txt"), "texts/../../outside/secret.txt",
               "linked/secret.txt", "texts/escape.txt", "texts\\..\\..\\outside\\secret.txt", "a\x00b.txt"]  # fmt: skip
    _craft_index(lib, escapes)
    with client_for(make_app(lib, tiny_model)) as c:
        by_path = {
            r["path"]: r["id"] for r in c.get("/api/search", params={"q": "x", "k": 100}).json()["results"]
        }
        for path in escapes:
            item = by_path[path]
            response = c.get(f"/api/items/{item}/file")
            assert response.status_code in (403, 404), path
            assert SECRET not in response.text and "root:" not in response.text
            assert c.get(f"/api/items/{item}/render").status_code in (403, 404, 422)
            meta = c.get(f"/api/items/{item}").json()
            assert meta["available"] is False and meta["text"] is None and meta["problem"]
        _is_json_error(c.get(f"/api/items/{by_path['texts/escape.txt']}/file"), 403, "forbidden")
        # An in-root symlink stays fine: only escapes are refused.
        (lib.media / "texts" / "alias.txt").symlink_to(lib.media / "texts" / "lied.txt")
        assert c.get(f"/api/items/{by_path['texts/lied.txt']}/file").status_code == 200


# ----------------------------------------------------------------------------- bodies and headers
@pytest.mark.parametrize(
    "body, content_type, status, code",
    [(b"{bad json", "application/json", 400, "malformed_json"), (b'{"q": "x",}', "application/json", 400, "malformed_json"),
     (b"[1, 2]", "application/json", 422, "invalid_request"), (b'{"q": 5}', "application/json", 422, "invalid_request"),
     (b'{"q": "x", "k": 0}', "application/json", 422, "invalid_request"), (b'{"q": "x", "extra": 1}', "application/json", 422, "invalid_request"),
     (b'{"q": ""}', "application/json", 422, "invalid_request"), (b'{"q": "   "}', "application/json", 422, "unprocessable"),
     (b"", "application/json", 422, "invalid_request"), (b'{"q": "x"}', "text/plain", 422, "invalid_request"),
     (b"\xff\xfe\x00", "application/json", 400, None)],
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


def test_render_page_out_of_bounds(client):
    results = client.get("/api/search", params={"q": "x", "k": 100, "modality": "symbolic"}).json()["results"]
    item = next(r for r in results if r["kind"] == "score")
    _is_json_error(client.get(item["render_url"], params={"page": 0}), 422)
    _is_json_error(client.get(item["render_url"], params={"page": 99}), 404)


def test_unknown_route_and_method(client):
    _is_json_error(client.get("/api/nothing"), 404, "not_found")
    _is_json_error(client.delete("/api/search"), 405, "method_not_allowed")
    _is_json_error(client.get("/static/secret.py"), 404, "not_found")


def test_foreign_host_header_is_refused(client):
    _is_json_error(client.get("/api/health", headers={"host": "evil.example"}), 400, "bad_host")
    _is_json_error(
        client.get("/api/health", headers={"host": "127.0.0.1.evil.example:8000"}), 400, "bad_host"
    )
    assert client.get("/api/health", headers={"host": "localhost:8000"}).status_code == 200
    assert client.get("/api/health", headers={"host": "[::1]:8000"}).status_code == 200


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


def test_admin_extend_refuses_bad_input(client, library):  # noqa: F811
    auth = {"authorization": "Bearer s3cret-token"}
    missing = client.post("/api/admin/extend", json={"embeddings": "/no/such/folder"}, headers=auth)
    _is_json_error(missing, 422)
    escape = client.post(
        "/api/admin/extend", json={"embeddings": str(library.emb), "media_prefix": "../x"}, headers=auth
    )
    _is_json_error(escape, 422, "unprocessable")
    _is_json_error(
        client.post("/api/admin/extend", json={"embeddings": ""}, headers=auth), 422, "invalid_request"
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

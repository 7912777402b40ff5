"""Shared set-up of the ``test_serve_*`` files: a small embedded + indexed music library, the
service over it (in-process or on a live uvicorn server), and raw HTTP for paths that HTTP
clients would normalise before sending."""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import PARITY

SECRET = "TOP-SECRET-NOT-IN-THE-LIBRARY"
QUERY_TEXT = "a melancholy waltz for solo piano"

LIBRARY_FILES = {
    "scores": ["inputs/musicxml/bach_bwv66_6.mxl", "inputs/musicxml/oneills_0003_little_heathy_hill.musicxml",
               "prep/abc_interleaved/foster_brown_hair.abc"],
    "midi": ["inputs/midi/m21_test01.mid", "inputs/midi/m21_k525short.mid", "prep/mtf/m21_test08.mtf"],
    "audio": ["mert/inputs/sines_16k_mono_3s7.wav", "mert/inputs/sines_44k1_stereo_12s3.wav"],
}  # fmt: skip
TEXTS = {"texts/waltz.txt": QUERY_TEXT, "texts/lied.txt": "ein fröhliches Volkslied in G-Dur"}


@dataclass
class Library:
    """``media`` (the embedded folder), ``emb`` (``clamp3 embed`` output), ``idx`` (the index),
    ``outside`` (a folder beside the media root holding a secret file), ``model_dir``."""

    media: Path
    emb: Path
    idx: Path
    outside: Path
    model_dir: Path

    def copy(self, target: Path) -> Library:
        """A private copy (for tests that change the index or the media)."""
        for name in ("media", "emb", "idx"):
            shutil.copytree(getattr(self, name), target / name, symlinks=True)
        outside = target / "outside"
        shutil.copytree(self.outside, outside)
        return Library(target / "media", target / "emb", target / "idx", outside, self.model_dir)


def make_media(media: Path, outside: Path) -> None:
    for folder, files in LIBRARY_FILES.items():
        (media / folder).mkdir(parents=True, exist_ok=True)
        for rel in files:
            shutil.copy(PARITY / rel, media / folder / Path(rel).name)
    for rel, text in TEXTS.items():
        (media / rel).parent.mkdir(parents=True, exist_ok=True)
        (media / rel).write_text(text, encoding="utf-8")
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "secret.txt").write_text(SECRET, encoding="utf-8")
    # A symlink planted in the collection that points out of it: it gets embedded and indexed
    # like any file, and the service must still refuse to serve it.
    (media / "texts" / "escape.txt").symlink_to(outside / "secret.txt")


def build_library(root: Path, model_dir: Path) -> Library:
    from clamp3 import Clamp3Model
    from clamp3.embed_folder import embed_folder
    from clamp3.index import build_index

    lib = Library(root / "media", root / "emb", root / "idx", root / "outside", model_dir)
    make_media(lib.media, lib.outside)
    model = Clamp3Model.from_pretrained(model_dir)
    report = embed_folder(model, lib.media, lib.emb, show_progress=False, model_id=str(model_dir))
    assert report.failed == 0, report.failures
    build_index(lib.emb, lib.idx, progress=False)
    return lib


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    from clamp3 import Clamp3Model

    return Clamp3Model.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="session")
def library(tmp_path_factory, tiny_model_dir) -> Library:
    return build_library(tmp_path_factory.mktemp("serve_library"), tiny_model_dir)


def make_app(lib: Library, model, **settings):
    from clamp3.serve.service import build_app
    from clamp3.serve.settings import LOCAL_HOSTS, Settings

    settings.setdefault("allowed_hosts", LOCAL_HOSTS | {"testserver"})
    return build_app(lib.idx, lib.media, model, Settings(**settings))


def shut_down(app) -> None:
    """What the app's shutdown does (the text worker stops, the upload folder goes), for apps
    whose lifespan never ran (in-process calls, ``live_server``). Safe to repeat."""
    if app.state.catalog.encoder is not None:
        app.state.catalog.encoder.close()
    app.state.uploads.close()


@contextlib.contextmanager
def app_for(lib: Library, model, **settings) -> Iterator:
    """``make_app`` that is shut down when the block exits: tests leave no upload folder behind."""
    app = make_app(lib, model, **settings)
    try:
        yield app
    finally:
        shut_down(app)


def client_for(app):
    from fastapi.testclient import TestClient

    return TestClient(app, base_url="http://127.0.0.1:8000", raise_server_exceptions=False)


@contextlib.contextmanager
def live_server(app) -> Iterator[str]:
    """Run ``app`` on uvicorn at 127.0.0.1 (a free port) in a thread; yield the base URL."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # lifespan off: the app may outlive this server (shutdown would close its shared state)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def raw_get(base_url: str, raw_path: str, host: str | None = None) -> tuple[int, bytes]:
    """GET ``raw_path`` exactly as written (no dot-segment removal, no re-encoding)."""
    address = base_url.removeprefix("http://")
    name, port = address.split(":")
    request = (f"GET {raw_path} HTTP/1.1\r\nHost: {host or address}\r\nConnection: close\r\n\r\n").encode(
        "latin-1"
    )
    with socket.create_connection((name, int(port)), timeout=30) as conn:
        conn.sendall(request)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body

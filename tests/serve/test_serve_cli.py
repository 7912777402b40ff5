"""``clamp3 serve`` from the command line: clear errors for bad arguments, and a real start on
127.0.0.1 that answers, writes JSON log lines and stops cleanly on SIGTERM."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from serve_support import library  # noqa: F401

pytest.importorskip("fastapi")


def test_bad_arguments_exit_2_with_a_message(tmp_path, capsys, library):  # noqa: F811
    from clamp3.cli.main import main

    assert main(["serve", str(tmp_path / "nowhere"), "--media-root", str(tmp_path), "--no-model"]) == 2
    assert "not an index folder" in capsys.readouterr().err
    missing_media = ["serve", str(library.idx), "--media-root", str(tmp_path / "none"), "--no-model"]
    assert main(missing_media) == 2
    assert "media root is not a folder" in capsys.readouterr().err


@pytest.mark.parametrize(
    "option, value, problem",
    [("--port", "99999", "1-65535"), ("--port", "0", "at least 1"), ("--port", "http", "expected an integer"),
     ("--max-upload-mb", "-1", "a finite number more than 0, got -1"), ("--max-upload-mb", "0", "more than 0"), ("--max-upload-mb", "nan", "finite"),
     ("--max-audio-seconds", "0", "more than 0"), ("--max-audio-seconds", "inf", "finite"), ("--threads", "0", "at least 1")],
)  # fmt: skip
def test_bad_options_are_refused_when_parsed(tmp_path, capsys, option, value, problem):
    """Refused by argparse (usage + exit 2) before any model or index is read, not by uvicorn
    with a traceback (``--port 99999`` raised OverflowError) or silently accepted."""
    from clamp3.cli.main import main

    with pytest.raises(SystemExit) as exited:
        main(["serve", str(tmp_path), "--media-root", str(tmp_path), "--no-model", option, value])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and problem in err and "Traceback" not in err


def test_a_busy_port_is_refused_before_the_model_or_the_index_is_read(tmp_path, capsys, monkeypatch):
    """uvicorn found out only after startup, with exit 3 and a JSON log line."""
    import socket

    from clamp3.cli import serve
    from clamp3.cli.main import main

    monkeypatch.setattr(serve, "pipeline_of", lambda *a, **k: pytest.fail("the model was loaded"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["serve", str(tmp_path / "no-index"), "--media-root", str(tmp_path), "--port", str(port)]
        assert main(argv) == 2
    reason = f"cannot serve on 127.0.0.1:{port}: Address already in use; choose another --port or --host"
    assert capsys.readouterr().err == f"error: {reason}\n"


def test_the_help_names_only_endpoints_the_service_has(capsys):
    import re

    from clamp3.cli.main import main
    from clamp3.serve.routes import router

    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    named = set(re.findall(r"/api/[a-z/]+", " ".join(capsys.readouterr().out.split())))
    assert named and named <= {route.path for route in router.routes}  # /api/admin/extend was dropped


def test_allowed_hosts():
    from clamp3.cli.serve import _allowed_hosts

    local = _allowed_hosts(argparse.Namespace(host="127.0.0.1", allowed_host=None))
    assert local == {"127.0.0.1", "localhost", "::1"}
    assert _allowed_hosts(argparse.Namespace(host="0.0.0.0", allowed_host=None)) is None
    named = _allowed_hosts(argparse.Namespace(host="0.0.0.0", allowed_host=["music.example.org"]))
    assert "music.example.org" in named and "0.0.0.0" in named


def test_serve_starts_answers_logs_and_stops(library, tmp_path):  # noqa: F811
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "clamp3.cli.main",
        "serve",
        str(library.idx),
        "--media-root",
        str(library.media),
    ]
    command += ["--model", str(library.model_dir), "--port", str(port), "--max-upload-mb", "1"]
    command += ["--max-audio-seconds", "30"]
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "CLAMP3_ADMIN_TOKEN": "t"}
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, log.read_text()
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.3)
        assert health.json()["items"] == 10 and health.json()["max_upload_bytes"] == 2**20
        assert health.json()["max_audio_seconds"] == 30 and health.json()["model"] == "tiny"
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/").status_code == 200
        assert (
            httpx.post(f"{base}/api/admin/reload", headers={"authorization": "Bearer t"}).status_code == 200
        )
        assert httpx.get(f"{base}/api/health", headers={"host": "evil.example"}).status_code == 400
    finally:
        server.send_signal(signal.SIGTERM)  # the server this test started
        # uvicorn shuts down gracefully, then re-raises the signal so the exit status tells why.
        assert server.wait(timeout=30) in (0, -signal.SIGTERM)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert any(line["message"].startswith("Finished server process") for line in lines)
    access = [line for line in lines if line["logger"] == "clamp3.serve.access"]
    assert {(a["method"], a["path"], a["status"]) for a in access} >= {
        ("GET", "/api/health", 200),
        ("GET", "/", 200),
        ("POST", "/api/admin/reload", 200),
        ("GET", "/api/health", 400),
    }
    assert all(a["request_id"] and a["duration_ms"] >= 0 for a in access)
    assert any(line["message"] == "index reloaded" for line in lines)


def test_quiet_serve_logs_warnings_only():
    """`serve --quiet` (and `demo --serve --quiet`): no startup or request lines, warnings kept."""
    import logging

    from clamp3.serve.logs import use_json_logging

    names = ("", "clamp3", "uvicorn", "uvicorn.error")
    before = {name: logging.getLogger(name).level for name in names}
    root_formatters = [handler.formatter for handler in logging.getLogger().handlers]
    try:
        use_json_logging(logging.WARNING)
        for name in ("clamp3.serve.access", "uvicorn.error"):
            assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
            assert logging.getLogger(name).isEnabledFor(logging.WARNING), name
        use_json_logging(logging.INFO)
        assert logging.getLogger("clamp3.serve.access").isEnabledFor(logging.INFO)
    finally:
        for name, level in before.items():
            logging.getLogger(name).setLevel(level)
        for handler, formatter in zip(logging.getLogger().handlers, root_formatters, strict=False):
            handler.setFormatter(formatter)
    from clamp3.cli.main import build_parser

    assert build_parser("serve").parse_args(["serve", "idx", "--media-root", "m", "--quiet"]).quiet

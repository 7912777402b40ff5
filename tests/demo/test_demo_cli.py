"""``clamp3 demo`` / ``clamp3 benchmark`` settings through ``clamp3.cli.main.main``: bad settings
end with one line and exit status 2 before anything is built, the model is resolved before the
corpus, an unreachable hub fails at once, a too small test split stops the demo before training,
and ``--quiet`` logs nothing below a warning."""

from __future__ import annotations

import http.server
import logging
import socket
import threading

import pytest
from demo_support import ready_corpus

from clamp3.cli.main import main
from clamp3.demo import pipeline
from clamp3.utils.errors import InputError


@pytest.fixture()
def no_build(monkeypatch):
    """Any corpus build or training fails the test at once (the old code got that far)."""

    def reached(*args, **kwargs):
        raise AssertionError("the demo went on to build or train")

    monkeypatch.setattr(pipeline, "ensure_corpus", reached)
    monkeypatch.setattr(pipeline, "train_demo_model", reached)


def _one_line_error(capsys, start: str) -> None:
    err = capsys.readouterr().err
    assert err.startswith(f"error: {start}") and err.count("\n") == 1 and "Traceback" not in err, err


@pytest.mark.parametrize(
    ("argv", "start"),
    [
        (["--steps", "1,2"], "steps: give 3 positive step counts"),
        (["--model", "MISSING"], "MISSING: not a model directory"),
        (["--workdir", "FILE"], "FILE: not a folder"),
    ],
)
def test_demo_bad_settings_exit_2_before_anything_is_built(tmp_path, capsys, no_build, argv, start):
    work = tmp_path / "work"
    (tmp_path / "FILE").write_text("not a folder\n", encoding="utf-8")
    argv = [str(tmp_path / a) if a in ("MISSING", "FILE") else a for a in argv]
    assert main(["demo", "--workdir", str(work), *argv, "--quiet"]) == 2
    _one_line_error(capsys, str(tmp_path / start) if start[0].isupper() else start)
    assert not work.exists()


def test_demo_serve_on_a_busy_port_exits_2_before_anything_is_built(tmp_path, capsys, no_build):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["demo", "--workdir", str(tmp_path / "w"), "--serve", "--port", str(port)]) == 2
    _one_line_error(capsys, f"cannot serve on 127.0.0.1:{port}: Address already in use")
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize(
    "argv",
    [["--pieces", "0"], ["--pieces", "-1"], ["--steps", "0,5,5"], ["--threads", "0"], ["--port", "70000"]],
)
def test_demo_bad_numbers_are_usage_errors(tmp_path, capsys, no_build, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--workdir", str(tmp_path / "w"), *argv])
    assert exit_info.value.code == 2 and f"argument {argv[0]}" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_benchmark_of_a_missing_corpus_exits_2_before_loading_a_model(tmp_path, capsys, monkeypatch):
    def load(*args, **kwargs):
        raise AssertionError("the model was loaded before the corpus was checked")

    monkeypatch.setattr("clamp3.cli.demo.pipeline_of", load)
    assert main(["benchmark", str(tmp_path / "nonexist"), "--quiet"]) == 2
    _one_line_error(capsys, f"{tmp_path / 'nonexist'}: not a corpus folder")


# ------------------------------------------------------------------ official weights, no hub
@pytest.fixture()
def hub_down(monkeypatch):
    """Nothing cached, HF_HUB_OFFLINE unset, the hub probe fails; a real download attempt
    (the one that retries for ~40 s) fails the test."""
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    def download(*, repo_id, filename, local_files_only=False, **kwargs):
        if local_files_only:
            raise LocalEntryNotFoundError("not cached")
        raise AssertionError("downloaded although the hub was known to be unreachable")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr("clamp3.hub.hub_unreachable", lambda endpoint: f"{endpoint} is unreachable: test")


def test_demo_with_saas_and_no_hub_fails_at_once_before_the_corpus(tmp_path, capsys, no_build, hub_down):
    work = tmp_path / "work"
    assert main(["demo", "--workdir", str(work), "--model", "saas"]) == 2
    _one_line_error(capsys, "the 'saas' weights: sander-wood/clamp3 weights_clamp3_saas_")
    assert not work.exists()


def test_hf_hub_offline_skips_the_probe(monkeypatch, hub_down):
    from huggingface_hub import constants

    from clamp3.checkpoints import download_official
    from clamp3.utils.errors import CheckpointError

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr("clamp3.hub.hub_unreachable", lambda endpoint: pytest.fail("probed"))
    with pytest.raises(CheckpointError, match="HF_HUB_OFFLINE is set"):
        download_official("c2")


def test_hub_probe_tells_a_closed_port_from_a_server(monkeypatch):
    from clamp3.hub import hub_unreachable

    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # keep the test output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert hub_unreachable(f"http://127.0.0.1:{server.server_address[1]}", timeout=5) is None
    finally:
        server.shutdown()
        server.server_close()
    # the same port, now closed: refused at once
    reason = hub_unreachable(f"http://127.0.0.1:{server.server_address[1]}", timeout=5)
    assert reason is not None and "unreachable" in reason


# ------------------------------------------------------------------ demo on a ready-made corpus
def test_a_too_small_test_split_stops_the_demo_before_training(tmp_path, capsys, parity_dir, monkeypatch):
    pytest.importorskip("music21")
    monkeypatch.setattr(
        pipeline, "train_demo_model", lambda *a: pytest.fail("trained on a corpus without a test split")
    )
    work = tmp_path / "work"
    needed = pipeline.pieces_for_split("test", pipeline.MIN_SPLIT_PIECES)
    # Too few pieces for the split: refused in a second, before anything is built or recorded,
    # so the advised --pieces then works in the same folder.
    assert main(["demo", "--workdir", str(work), "--pieces", str(needed - 1), "--quiet"]) == 2
    err = capsys.readouterr().err
    few = needed - 1
    assert err.startswith(f"error: --pieces {few}: the first {few} pieces of the selection hold 1 test")
    assert f"needs at least 2; use --pieces {needed} or more" in err and err.count("\n") == 1
    assert not work.exists()
    # A built corpus whose split came out too small (failed pieces are replaced): checked again.
    ready_corpus(work, parity_dir, n_test=0, pieces=needed)
    argv = ["demo", "--workdir", str(work), "--pieces", str(needed), "--seconds-max", "4", "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"error: {work / 'corpus'}: the test split has 0 piece(s) ({needed} train, 0 validation, 0 test)"
    )
    assert f"needs at least 2; use --pieces {needed} or more" in err and err.count("\n") == 1
    # one test piece is not enough either: a ranking of one candidate always scores 1.0
    ready_corpus(work, parity_dir, n_test=1, pieces=30)
    with pytest.raises(InputError, match="the test split has 1 piece"):
        pipeline.check_split(work / "corpus", "test")


def test_pieces_for_split_is_the_shortest_prefix_with_enough_pieces():
    pytest.importorskip("music21")
    from clamp3.corpus.assemble import split_of
    from clamp3.corpus.select import select_pieces

    needed = pipeline.pieces_for_split("test", 2)

    def count(n: int) -> int:
        return sum(split_of(ref.group) == "test" for ref in select_pieces(n))

    assert count(needed) == 2 and count(needed - 1) == 1


def test_quiet_demo_logs_no_info_lines(tmp_path, capsys, caplog, parity_dir, tiny_model_dir):
    work = tmp_path / "work"
    ready_corpus(work, parity_dir, n_test=3, pieces=30)
    argv = [
        "demo",
        "--workdir",
        str(work),
        "--pieces",
        "30",
        "--seconds-max",
        "4",
        "--model",
        str(tiny_model_dir),
    ]
    caplog.set_level(logging.INFO)
    assert main([*argv, "--no-plot"]) == 0
    assert any(r.levelno == logging.INFO for r in caplog.records)  # loud without --quiet
    caplog.clear()
    caplog.set_level(logging.INFO)
    capsys.readouterr()
    assert main([*argv, "--no-plot", "--quiet"]) == 0
    assert [r.getMessage() for r in caplog.records if r.levelno < logging.WARNING] == []
    out, err = capsys.readouterr()
    assert "text (en) -> sheet" in out and err == ""


def test_a_stopped_demo_says_where_and_how_to_continue(tmp_path, capsys, monkeypatch):
    # SIGTERM / Ctrl-C during training: one line (no traceback, no `--resume`, which the demo
    # has not got), and 128 + the signal, as `clamp3 train` exits.
    import signal

    from clamp3.train.interrupt import TrainingInterrupted

    def stopped(options):
        raise TrainingInterrupted(signal.SIGTERM, "after step 3 of stage 'm3-mini' (CHECKPOINT)")

    monkeypatch.setattr(pipeline, "run_demo", stopped)
    assert main(["demo", "--workdir", str(tmp_path / "w"), "--quiet"]) == 143
    err = capsys.readouterr().err
    where = "stopped by SIGTERM after step 3 of stage 'm3-mini' (CHECKPOINT)"
    assert err == f"{where}; run the same command again to continue\n"


def _parsed(argv: list[str]):
    from clamp3.cli.main import build_parser

    return build_parser().parse_args(["demo", *argv])


def test_training_texts_are_untitled_by_default_and_titles_can_be_asked_for():
    assert _parsed([]).train_titles is False
    assert _parsed(["--train-titles"]).train_titles is True
    assert _parsed(["--no-train-titles"]).train_titles is False  # the flag of the release before
    assert pipeline.settings(pipeline.DemoOptions(train_titles=True))["corpus"].get("train_titles") is None


@pytest.mark.parametrize(
    ("argv", "extra"),
    [
        ([], []),
        (["--workdir", "w", "--quiet"], ["--workdir", "w"]),
        (["--pieces", "60", "--seconds-max", "4"], ["--pieces", "60", "--seconds-max", "4.0"]),
        (
            ["--steps", "2,3,4", "--batch-size", "8", "--train-titles"],
            ["--steps", "2,3,4", "--batch-size", "8", "--train-titles"],
        ),
        (["--transpose", "2", "--model", "m"], ["--transpose", "2", "--model", "m"]),
    ],
)
def test_the_printed_serve_command_repeats_the_folder_settings(argv, extra):
    from clamp3.cli.demo import serve_command

    command = serve_command(_parsed(argv))
    assert command == ["clamp3", "demo", "--serve", *extra]
    again = _parsed(command[2:])  # parsed back, it names the same folder settings
    keys = ("workdir", "pieces", "seconds_max", "transpose", "train_titles", "steps", "batch_size", "model")
    assert all(getattr(again, k) == getattr(_parsed(argv), k) for k in keys)


def test_the_printed_serve_command_quotes_a_folder_with_a_space():
    import shlex

    from clamp3.cli.demo import serve_command_line

    line = serve_command_line(_parsed(["--workdir", "my runs/demo 1"]))
    assert line == "clamp3 demo --serve --workdir 'my runs/demo 1'"  # it printed the words bare
    assert shlex.split(line)[-1] == "my runs/demo 1"

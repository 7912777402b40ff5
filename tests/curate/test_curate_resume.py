"""``clamp3 curate`` killed with SIGKILL in the middle of a run resumes to the same files as an
uninterrupted run (byte-equal), against a scripted LLM on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from curate_support import ChatServer, FakeCurator, write_demo_corpus

from clamp3.curate import ChatClient, CurateSettings, RetryPolicy, curate, output_paths

N_ITEMS = 30
# Content-only faults (the same answer for the same request however often it is asked), so an
# interrupted and an uninterrupted run see the same answers and must produce the same files.
PLAN = {
    "Song 3": {"annotate": ["malformed"]},
    "Song 8": {"translate": ["wrong_language"]},
    "Song 12": {"annotate": ["ungrounded"]},
    "Song 20": {"annotate": ["generic"]},
    "Song 21": {"annotate": ["generic"]},
}
LANGUAGES = "de,fr,es,it"


def _cli(url: str, catalogue, docs, out, report) -> list[str]:
    return [
        sys.executable, "-m", "clamp3.cli.main", "curate", str(catalogue), str(docs), str(out),
        "--llm-url", url, "--llm-model", "fake", "--languages", LANGUAGES,
        "--concurrency", "2", "--report", str(report), "--no-progress",
    ]  # fmt: skip


def _state_lines(out) -> int:
    path = output_paths(out)["state"] / "state.jsonl"
    return path.read_bytes().count(b"\n") if path.exists() else 0


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_gives_byte_equal_output(tmp_path):
    catalogue, docs = write_demo_corpus(tmp_path, N_ITEMS)
    reference = tmp_path / "reference" / "train.jsonl"
    resumed = tmp_path / "resumed" / "train.jsonl"
    env = {**os.environ, "OPENAI_API_KEY": ""}
    with ChatServer(FakeCurator(PLAN)) as server:
        # The uninterrupted run goes through the library with the CLI's default settings.
        with ChatClient(server.url, "fake", concurrency=2, retry=RetryPolicy(base_delay=0.01)) as client:
            settings = CurateSettings(languages=tuple(LANGUAGES.split(",")))
            curate(catalogue, docs, reference, client, settings, show_progress=False)
            reference_requests = client.budget.used

        # Slow answers so the kill lands with items done, items in flight and items not started.
        server.script = FakeCurator(PLAN, delay=0.15)
        process = subprocess.Popen(_cli(server.url, catalogue, docs, resumed, tmp_path / "r1.json"), env=env)
        deadline = time.monotonic() + 120
        while _state_lines(resumed) < 6 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
        done_at_kill = _state_lines(resumed)
        assert process.returncode == -signal.SIGKILL
        assert 6 <= done_at_kill < N_ITEMS, "the kill did not land in the middle of the run"
        assert not resumed.exists()  # the output is written at the end of a run, atomically

        finished = subprocess.run(
            _cli(server.url, catalogue, docs, resumed, tmp_path / "r2.json"),
            env=env,
            capture_output=True,
            text=True,
        )
    assert finished.returncode == 0, finished.stderr
    summary = json.loads(finished.stdout.strip().splitlines()[-1])
    assert summary["pending"] == 0 and summary["kept"] == N_ITEMS - 4
    assert summary["rejected"] == {
        "duplicate": 1,
        "invalid_annotation": 1,
        "translation_language": 1,
        "ungrounded": 1,
        "catalogue_error": 0,
    }
    report = json.loads((tmp_path / "r2.json").read_text())
    # The rerun asked only for the items the killed run had not recorded (each took >= 1 request).
    assert report["requests"]["used"] <= reference_requests - done_at_kill
    assert resumed.read_bytes() == reference.read_bytes()
    assert (
        output_paths(resumed)["provenance"].read_bytes() == output_paths(reference)["provenance"].read_bytes()
    )
    ids = [json.loads(line)["id"] for line in (output_paths(resumed)["state"] / "state.jsonl").open()]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == N_ITEMS

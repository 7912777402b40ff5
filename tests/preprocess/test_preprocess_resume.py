"""``clamp3 convert`` killed with SIGKILL mid-batch, then rerun: no partial outputs, nothing
finished is redone, everything ends up converted."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _cli(src: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "clamp3.cli.main",
        "convert",
        str(src),
        str(out),
        "--workers",
        "2",
        "--quiet",
    ]


def _outputs(out: Path) -> dict[Path, tuple[int, int]]:
    return {
        p: (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in out.rglob("*")
        if p.is_file() and p.suffix in (".abc", ".mtf") and not p.name.startswith(".")
    }


def test_sigkill_then_rerun(parity_dir, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    prep = parity_dir / "prep"
    expected: dict[Path, bytes] = {}
    for i in range(8):  # ~1 s each: the kill lands while most of them are still to do
        sub = src / f"box{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        shutil.copy(parity_dir / "inputs" / "musicxml" / "joplin_maple_leaf_rag.mxl", sub / f"rag{i}.mxl")
        expected[out / sub.name / f"rag{i}.abc"] = (
            prep / "abc_interleaved" / "joplin_maple_leaf_rag.abc"
        ).read_bytes()
    for name in ["m21_test01", "m21_test09", "m21_k525short"]:
        shutil.copy(parity_dir / "inputs" / "midi" / f"{name}.mid", src / f"{name}.mid")
        expected[out / f"{name}.mtf"] = (prep / "mtf" / f"{name}.mtf").read_bytes()

    proc = subprocess.Popen(_cli(src, out), start_new_session=True, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(_outputs(out)) < 5 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the batch finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its workers, as an OOM killer or a crash would
    proc.wait()
    proc.stderr.close()

    finished = _outputs(out)
    assert 5 <= len(finished) < len(expected)
    for path in finished:  # whatever exists is complete
        assert path.read_bytes() == expected[path], path
    stale = out / ".rag99.abc.k1ll3d00.tmp"  # as a write cut short would leave it
    stale.write_text("[V:1]ab", encoding="utf-8")

    rerun = subprocess.run(_cli(src, out), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert (
        f"{len(expected)} files: {len(expected) - len(finished)} converted, {len(finished)} already done"
        in (rerun.stderr)
    )
    after = _outputs(out)
    assert set(after) == set(expected)
    assert {p: after[p] for p in finished} == finished  # not rewritten: same inode and mtime
    for path, content in expected.items():
        assert path.read_bytes() == content, path
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_ctrl_c_stops_the_batch_at_once_and_says_what_was_done(parity_dir, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for i in range(40):  # a few seconds in all: most are still to do when Ctrl-C lands
        shutil.copy(parity_dir / "inputs" / "musicxml" / "joplin_maple_leaf_rag.mxl", src / f"rag{i}.mxl")
    proc = subprocess.Popen(
        _cli(src, out),
        start_new_session=True,
        stderr=subprocess.PIPE,
        text=True,
        # As at a terminal: a background pytest may have inherited SIGINT ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while len(_outputs(out)) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the batch finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
    sent = time.monotonic()
    _, stderr = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 10  # the files in progress are abandoned, not waited for
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and stderr.rstrip().endswith("interrupted")
    assert "40 files: " in stderr and "not reached (rerun to finish them)" in stderr
    expected = (parity_dir / "prep" / "abc_interleaved" / "joplin_maple_leaf_rag.abc").read_bytes()
    assert all(path.read_bytes() == expected for path in _outputs(out))

"""Forked workers after torch has used its thread pool, stopping busy workers, and atomic output
permissions."""

from __future__ import annotations

import os
import signal
import stat
import time

import torch

from clamp3.utils.io import write_text_atomic
from clamp3.utils.workers import fork_pool, stop_workers


def _torch_work(n: int) -> float:
    x = torch.randn(300, 300)
    return float((x @ x).sum().item() * 0 + n)


def test_forked_workers_run_torch_after_the_parent_used_threads():
    torch.set_num_threads(2)
    x = torch.randn(1500, 1500)
    (x @ x).sum()  # the parent's OpenMP pool is now initialised
    with fork_pool(2) as pool:
        results = [f.result(timeout=60) for f in [pool.submit(_torch_work, i) for i in range(4)]]
    assert results == [0.0, 1.0, 2.0, 3.0]


def test_atomic_outputs_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        # the module reads the umask once at import; 0o022 is the usual default it records
        write_text_atomic(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "a.txt").stat().st_mode)
    assert mode & 0o044 == 0o044  # group and others can read, unlike mkstemp's 0600


def test_stop_workers_ends_busy_workers_at_once():
    # Forked workers inherit the parent's SIGTERM handler (a server's graceful stop, a test
    # runner's); this one ignores the signal, so only a kill ends them.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        pool = fork_pool(2)
        futures = [pool.submit(time.sleep, 120) for _ in range(6)]
        deadline = time.monotonic() + 30
        while not all(f.running() for f in futures[:2]) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        signal.signal(signal.SIGTERM, previous)
    workers = list(pool._processes.values())
    started = time.monotonic()
    stop_workers(pool)
    pool.shutdown(wait=True)  # returns at once: nothing is left to wait for
    assert time.monotonic() - started < 20
    for process in workers:
        process.join(timeout=5)
        # The executor's manager thread reaps its workers too; when it wins the race, this
        # Process object reports no exit code until that thread has stored it.
        deadline = time.monotonic() + 10
        while process.exitcode is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert process.exitcode == -signal.SIGKILL
    assert all(f.done() for f in futures)

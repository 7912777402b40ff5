"""Forked workers after torch has used its thread pool, stopping busy workers, the crash-isolating
runner, and atomic output permissions."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import time

import pytest
import torch

from clamp3.utils import workers
from clamp3.utils.errors import InputError
from clamp3.utils.io import write_text_atomic
from clamp3.utils.workers import (
    WorkerDied,
    WorkerPool,
    WorkTimeout,
    fork_pool,
    run_here,
    run_isolated,
    stop_workers,
    time_limit,
)


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
    # The calls the killed workers held are failed by the executor's manager thread once it sees
    # them die, asynchronously: stop_workers reaps the processes itself, so this can come after.
    deadline = time.monotonic() + 10
    while not all(f.done() for f in futures) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert all(f.done() for f in futures)


# ----------------------------------------------------------------------------- the runner
def _task(n: int) -> int:
    """10 n; 3 kills its worker, 4 raises, 5 hangs in Python, 6 blocks every signal and hangs."""
    if n == 3:
        os._exit(1)  # a crash that takes the worker process down
    if n == 4:
        raise InputError(f"item{n}", "bad item")
    if n == 5:
        while True:  # swallows what it can, as a converter with a bare except would
            with contextlib.suppress(Exception):
                time.sleep(60)
    if n == 6:  # stands in for C code that never returns to the interpreter
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        time.sleep(120)
    return n * 10


def _by_index(outcomes) -> dict[int, object]:
    return {o.index: o.value if o.ok else o.error for o in outcomes}


def test_time_limit_interrupts_a_slow_call_and_nests():
    with pytest.raises(WorkTimeout) as caught, time_limit(0.2):
        time.sleep(3)
    assert caught.value.seconds == 0.2 and str(caught.value) == "took longer than 0.2 s (timeout)"
    started = time.monotonic()
    with pytest.raises(WorkTimeout), time_limit(0.2), time_limit(30):  # the sooner deadline governs
        time.sleep(3)
    assert time.monotonic() - started < 2
    with pytest.raises(WorkTimeout), time_limit(0.6):
        with contextlib.suppress(WorkTimeout), time_limit(0.1):  # the inner one expires first
            time.sleep(3)
        time.sleep(3)  # then the outer one, resumed
    assert time.monotonic() - started < 4


def _swallow_every_alarm(seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(BaseException):  # a converter's bare except
            time.sleep(0.01)
    return "finished late"


def test_an_expired_limit_fails_the_call_even_when_the_alarm_is_swallowed():
    with pytest.raises(WorkTimeout), time_limit(0.1):
        _swallow_every_alarm(0.5)


def test_each_item_gets_its_value_or_its_own_error():
    items = [1, 2, 3, 4, 7, 8]
    started = time.monotonic()
    got = _by_index(run_isolated(_task, items, workers=2, timeout=20))
    assert time.monotonic() - started < 30
    assert [got[i] for i in (0, 1, 4, 5)] == [10, 20, 70, 80]
    assert isinstance(got[2], WorkerDied)  # only the crashing item, not the ones beside it
    assert isinstance(got[3], InputError) and (got[3].path, got[3].reason) == ("item4", "bad item")


def test_in_process_runs_give_the_same_outcomes_without_a_crash():
    got = _by_index(run_here(_task, [1, 4, 5], timeout=0.3))
    assert got[0] == 10 and isinstance(got[1], InputError) and isinstance(got[2], WorkTimeout)


def test_a_hang_fails_only_that_item_after_the_timeout(monkeypatch):
    monkeypatch.setattr(workers, "GRACE_SECONDS", 1.0)
    started = time.monotonic()
    got = _by_index(run_isolated(_task, [5, 6, 1, 2, 7], workers=2, timeout=1))
    assert time.monotonic() - started < 20
    assert isinstance(got[0], WorkTimeout) and isinstance(got[1], WorkTimeout)  # soft, then killed
    assert [got[i] for i in (2, 3, 4)] == [10, 20, 70]


def test_a_pool_survives_a_crash_and_runs_again():
    with WorkerPool(2) as pool:
        assert isinstance(_by_index(pool.run(_task, [3, 1]))[0], WorkerDied)
        assert _by_index(pool.run(_task, [1, 2, 7])) == {0: 10, 1: 20, 2: 70}


def test_stopping_a_run_ends_its_workers_at_once():
    outcomes = run_isolated(time.sleep, [0.0, 120, 120, 120], workers=2)
    assert next(outcomes).index == 0
    started = time.monotonic()
    outcomes.close()  # what Ctrl-C in the caller's loop does once the generator is dropped
    assert time.monotonic() - started < 10


def _burn(seconds: float) -> int:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
    return os.getpid()


def test_a_finished_run_leaves_its_workers_reaped_and_their_cpu_time_counted():
    # The corpus build reports its CPU time from RUSAGE_CHILDREN, which holds a worker's time
    # only once the worker is reaped: killed and left to the executor's thread, a whole build's
    # workers were missing from it (3 s reported for 147 s of work).
    import resource

    def children_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime  # the loop's clock reads count as system time

    before = children_cpu()
    pids = {o.value for o in run_isolated(_burn, [0.3] * 4, workers=2)}
    gained = children_cpu() - before
    assert gained >= 0.9, gained  # four items of 0.3 s CPU each
    for pid in pids:  # no zombie left: the pid is gone from the process table
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)

"""Worker processes for the corpus build: a per-task time limit, crash isolation, CPU time.

Kept apart from the build steps so that :mod:`clamp3.corpus.build` only says what a piece
needs, and this module only how tasks run.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class TimeLimitExceeded(Exception):
    """Raised inside a task that runs past its time limit."""


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`TimeLimitExceeded` after ``seconds`` (POSIX, main thread; else no limit).

    The alarm repeats every second after the first, because converters with bare ``except:``
    clauses (xml2abc) may swallow one.
    """
    usable = (
        seconds and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise TimeLimitExceeded(f"took longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def make_pool(workers: int) -> ProcessPoolExecutor:
    # fork keeps the parent's imports (music21, torch): spawning would re-import them per worker
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_ignore_sigint)


def _ignore_sigint() -> None:
    # Ctrl-C is handled by the parent; every output already written is a complete file.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (workers, FluidSynth)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_tasks(
    func: Callable[[T], R], items: Sequence[T], workers: int, died: Callable[[T], R]
) -> Iterator[R]:
    """``func(item)`` for every item, in completion order, in ``workers`` processes (in this
    process when ``workers <= 1``). ``func`` must be picklable and return plain data.

    When a worker dies the pool breaks; the items it had not finished are then run one at a
    time in fresh single-worker pools, so only an item that kills its worker gets ``died(item)``.
    """
    if workers <= 1:
        for item in items:
            yield func(item)
        return
    finished: set[int] = set()
    with make_pool(workers) as pool:
        futures: dict[Any, int] = {pool.submit(func, item): i for i, item in enumerate(items)}
        try:
            for future in as_completed(futures):
                result = future.result()
                finished.add(futures[future])
                yield result
        except BrokenProcessPool:
            pass
        except BaseException:  # interrupted: do not wait for the queued items
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    for i, item in enumerate(items):
        if i in finished:
            continue
        with make_pool(1) as single:
            try:
                yield single.submit(func, item).result()
            except BrokenProcessPool:
                yield died(item)

"""Worker processes for the corpus build: a per-task time limit, crash isolation, CPU time.

Kept apart from the build steps so that :mod:`clamp3.corpus.build` only says what a piece
needs, and this module only how tasks run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from clamp3.utils import workers

T = TypeVar("T")
R = TypeVar("R")


class TimeLimitExceeded(Exception):
    """Raised inside a task that runs past its time limit."""


def time_limit(seconds: float | None) -> contextlib.AbstractContextManager[None]:
    """Raise :class:`TimeLimitExceeded` after ``seconds`` (POSIX, main thread; else no limit)."""
    return workers.time_limit(seconds, lambda: TimeLimitExceeded(f"took longer than {seconds:g} s"))


def make_pool(workers_count: int) -> ProcessPoolExecutor:
    return workers.fork_pool(workers_count)


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

"""The one crash-isolating worker runner of the bulk jobs (convert, embed, build-corpus, the
training file check), and its one timeout type.

:class:`WorkerPool` runs ``func(item)`` for many items in forked worker processes and yields one
:class:`Outcome` per item, in completion order: the value, or the error of that item alone.

- An exception raised by ``func`` is that item's error (it must survive a pickle round trip,
  as :mod:`clamp3.utils.errors` does; one that does not arrives as the pickling error).
- A worker that dies (a converter's segfault, the OOM killer) breaks the whole executor: the
  items that were in flight are retried one at a time in a fresh pool, so only the item that
  kills its worker again gets :class:`WorkerDied`, and the run goes on.
- ``timeout`` seconds per item: inside the worker :func:`time_limit` raises
  :class:`WorkTimeout` (a ``BaseException``, so converters' ``except Exception`` let it pass);
  an item that still runs :data:`GRACE_SECONDS` later (stuck in C code that never returns to
  the interpreter) has its worker killed by the parent and gets :class:`WorkTimeout`; the other
  items in flight are started again, not blamed.
- Ctrl-C (any ``BaseException`` in the parent, or closing the generator) ends the workers at
  once with :func:`stop_workers` instead of waiting for the items they hold.

At most ``workers`` items are in flight, so an item's time counts from its submission.
``workers <= 0`` runs the items in this process (the same outcomes and soft time limit, no crash
isolation). Workers are forked: they start at once and inherit the imported modules (music21,
torch) instead of importing them again. Forking a process whose OpenMP thread pool already ran
(any torch op with more than one thread) leaves the child's pool unusable: its first parallel
torch op hangs forever. :func:`init_worker` therefore pins torch to one thread in every worker,
and ignores Ctrl-C, which the parent handles (a converter's bare ``except:`` could otherwise
swallow it mid-file and write a wrong output).
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

GRACE_SECONDS = 5.0  # past the soft limit, before the parent kills a worker stuck in C code


class WorkTimeout(BaseException):
    """An item ran past its time limit (``seconds``). A ``BaseException`` so that converters'
    ``except Exception`` clauses, which turn errors into "bad input", let it through."""

    def __init__(self, seconds: float):
        super().__init__(seconds)
        self.seconds = seconds

    def __str__(self) -> str:
        return f"took longer than {self.seconds:g} s (timeout)"


class WorkerDied(RuntimeError):
    """The worker process died while it held this item (a crash, out of memory or killed)."""

    def __init__(self) -> None:
        super().__init__("the worker process died on it (a crash, out of memory or killed)")


@dataclass(frozen=True)
class Outcome(Generic[R]):
    """What one item gave: ``value``, or ``error`` (then ``value`` is None). ``index`` is the
    item's position in the run's input."""

    index: int
    value: R | None = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def init_worker(extra: Callable[[], None] | None = None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)
    if extra is not None:
        extra()


def fork_pool(workers: int, initializer: Callable[[], None] | None = None) -> ProcessPoolExecutor:
    """A process pool of ``workers`` forked workers (spawned where fork does not exist);
    ``initializer`` runs in each after :func:`init_worker`."""
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    return ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context(method),
        initializer=functools.partial(init_worker, initializer),
    )


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`WorkTimeout` in the main thread after ``seconds`` (POSIX; else no limit).

    The alarm repeats every second after the first expiry, because converters with bare
    ``except:`` clauses (xml2abc) may swallow one; a block that completes although its alarm
    went off raises :class:`WorkTimeout` on exit all the same, so an expired limit always fails
    the item (never an output finished late by a converter that swallowed the alarm). Limits
    nest: inside another one the sooner deadline governs, and the outer one resumes after.
    """
    usable = (
        seconds and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return
    limit, fired = float(seconds), []

    def expire(signum: int, frame: object) -> None:
        fired.append(True)
        raise WorkTimeout(limit)

    previous = signal.signal(signal.SIGALRM, expire)
    outer_left, outer_interval = signal.setitimer(signal.ITIMER_REAL, limit, 1.0)
    if outer_left > 0 and outer_left < limit:
        signal.setitimer(signal.ITIMER_REAL, outer_left, 1.0)
    started = time.monotonic()
    try:
        yield
        if fired:
            raise WorkTimeout(limit)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer_left > 0:  # resume the outer limit with what is left of it
            left = outer_left - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(left, 0.001), outer_interval)


def stop_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel the queued calls of ``pool`` and end its workers at once.

    For an interrupted parent: a plain ``shutdown`` lets every call already handed to a worker
    run to the end (minutes for slow files, since workers ignore Ctrl-C), and the interpreter
    waits for them on exit. A call cut off this way loses its work; outputs written through
    :func:`clamp3.utils.io.atomic_path` are then absent, never partial (the temporary file stays
    until the next run's clean-up). SIGKILL rather than SIGTERM: a forked worker inherits any
    SIGTERM handler of its parent (a test runner, a server), which would let it sleep on.
    """
    # The executor offers no public way to end busy workers before Python 3.14; its process
    # table is read before shutdown(), which clears it.
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(OSError, ValueError):  # already exited or closed
            process.kill()
    # Reaped here (a killed process ends within milliseconds), not later by the executor's
    # thread: until then its CPU time is missing from the parent's RUSAGE_CHILDREN, which the
    # corpus build reports, and it lingers as a zombie.
    for process in processes:
        with contextlib.suppress(OSError, ValueError, AssertionError):
            process.join(timeout=1.0)


def _call(func: Callable[[Any], R], timeout: float | None, item: Any) -> R:
    with time_limit(timeout):
        return func(item)


def run_here(
    func: Callable[[T], R], items: Iterable[T], timeout: float | None = None
) -> Iterator[Outcome[R]]:
    """The in-process runner: the outcomes :class:`WorkerPool` gives, in input order."""
    for index, item in enumerate(items):
        try:
            yield Outcome(index, _call(func, timeout, item))
        except (Exception, WorkTimeout) as exc:
            yield Outcome(index, error=exc)


class WorkerPool:
    """``workers`` forked processes (0: this process) that outlive one :meth:`run` (started on
    first need); :meth:`close` ends them. See the module docstring for the contract."""

    def __init__(
        self, workers: int, timeout: float | None = None, initializer: Callable[[], None] | None = None
    ):
        self.workers = workers
        self.timeout = timeout or None
        self.initializer = initializer
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        # Interrupted (Ctrl-C, SystemExit, an abandoned run): do not wait for the items held.
        self.close(now=exc_type is not None and not issubclass(exc_type, Exception))

    def close(self, now: bool = False) -> None:
        """End the workers: after their current items, or ``now`` (their work is lost)."""
        if self._pool is not None:
            if now:
                stop_workers(self._pool)
            else:
                self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def run(self, func: Callable[[T], R], items: Iterable[T]) -> Iterator[Outcome[R]]:
        """One :class:`Outcome` per item of ``items``, in completion order. ``func`` must be
        picklable (a module-level function or a ``functools.partial`` of one)."""
        items = list(items)
        if self.workers <= 0:
            yield from run_here(func, items, self.timeout)
            return
        yield from _Run(self, functools.partial(_call, func, self.timeout), items).outcomes()

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = fork_pool(self.workers, self.initializer)
        return self._pool

    def _restart(self) -> None:
        """Replace a broken executor, or one with a worker stuck past its deadline."""
        self.close(now=True)


class _Run:
    """The scheduling state of one :meth:`WorkerPool.run`."""

    def __init__(self, pool: WorkerPool, call: Callable[[Any], Any], items: list[Any]):
        self.pool, self.call, self.items = pool, call, items
        self.pending: deque[int] = deque(range(len(items)))
        self.suspects: deque[int] = deque()  # in flight when a worker died: retried one at a time
        self.in_flight: dict[Future, tuple[int, float]] = {}
        self.solo = False  # a suspect is in flight, alone

    def outcomes(self) -> Iterator[Outcome]:
        try:
            while self.pending or self.suspects or self.in_flight:
                self._fill()
                done, _ = wait(self.in_flight, timeout=self._wait_seconds(), return_when=FIRST_COMPLETED)
                yield from self._collect(done)
                yield from self._expire()
        except GeneratorExit:  # the caller stopped reading: drop what is queued
            for future in self.in_flight:
                future.cancel()
            raise
        except BaseException:  # interrupted: wait neither for queued nor for running items
            self.pool.close(now=True)
            raise

    def _fill(self) -> None:
        if self.solo:
            return
        if self.suspects:
            if not self.in_flight:
                self._submit(self.suspects.popleft())
                self.solo = True
            return
        while self.pending and len(self.in_flight) < self.pool.workers:
            self._submit(self.pending.popleft())

    def _submit(self, index: int) -> None:
        try:
            future = self.pool._executor().submit(self.call, self.items[index])
        except BrokenProcessPool:  # broke since the last wait: a failed future says so
            future = Future()
            future.set_exception(BrokenProcessPool("the pool broke"))
        self.in_flight[future] = (index, time.monotonic())

    def _wait_seconds(self) -> float | None:
        if self.pool.timeout is None or not self.in_flight:
            return None
        oldest = min(started for _, started in self.in_flight.values())
        return max(0.0, oldest + self.pool.timeout + GRACE_SECONDS - time.monotonic())

    def _collect(self, done: set[Future]) -> Iterator[Outcome]:
        broken = False
        for future in done:
            index, _ = self.in_flight.pop(future)
            error = future.exception()
            if isinstance(error, BrokenProcessPool):
                broken = True
                if self.solo:  # died again, alone: this item is the culprit
                    yield Outcome(index, error=WorkerDied())
                else:
                    self.suspects.append(index)
            else:
                yield Outcome(index, None if error else future.result(), error)
        if self.solo and not self.in_flight:
            self.solo = False
        if broken:
            # Every other item of the broken executor fails too; retry them alone.
            self.suspects.extend(index for index, _ in self.in_flight.values())
            self.in_flight.clear()
            self.solo = False
            self.pool._restart()

    def _expire(self) -> Iterator[Outcome]:
        if self.pool.timeout is None or not self.in_flight:
            return
        limit = self.pool.timeout + GRACE_SECONDS
        now = time.monotonic()
        overdue = [f for f, (_, started) in self.in_flight.items() if now - started >= limit]
        if not overdue:
            return
        for future in overdue:
            index, _ = self.in_flight.pop(future)
            yield Outcome(index, error=WorkTimeout(self.pool.timeout))
        # Killing the stuck worker takes the executor down: start the others again.
        self.pending.extendleft(index for index, _ in self.in_flight.values())
        self.in_flight.clear()
        self.solo = False
        self.pool._restart()


def run_isolated(
    func: Callable[[T], R],
    items: Iterable[T],
    workers: int,
    timeout: float | None = None,
    initializer: Callable[[], None] | None = None,
) -> Iterator[Outcome[R]]:
    """:meth:`WorkerPool.run` in a pool of its own, ended at once when the run ends: every item
    is done by then (or no longer wanted: the caller was interrupted or stopped reading), and
    killing idle workers saves joining them (~0.1 s a run, which a service pays per upload)."""
    pool = WorkerPool(workers, timeout, initializer)
    try:
        yield from pool.run(func, items)
    finally:
        pool.close(now=True)

"""Worker processes shared by the bulk jobs (convert, embed, build-corpus).

Workers are forked: they start at once and inherit the imported modules (music21, torch)
instead of importing them again. Forking a process whose OpenMP thread pool already ran
(any torch op with more than one thread) leaves the child's pool unusable: its first parallel
torch op hangs forever. :func:`init_worker` therefore pins torch to one thread in every worker
(each worker is one of several processes anyway), and ignores Ctrl-C, which the parent handles.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor


def init_worker() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def fork_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool of ``workers`` forked workers (spawned where fork does not exist)."""
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    return ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context(method), initializer=init_worker
    )


@contextlib.contextmanager
def time_limit(seconds: float | None, make_error: Callable[[], BaseException]) -> Iterator[None]:
    """Raise ``make_error()`` in the main thread after ``seconds`` (POSIX; else no limit).

    The timer repeats every second after the first expiry, because converters with bare
    ``except:`` clauses (xml2abc) may swallow the first one.
    """
    usable = (
        seconds and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise make_error()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

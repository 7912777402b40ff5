"""Worker processes shared by the bulk jobs (convert, embed, build-corpus).

Workers are forked: they start at once and inherit the imported modules (music21, torch)
instead of importing them again. Forking a process whose OpenMP thread pool already ran
(any torch op with more than one thread) leaves the child's pool unusable: its first parallel
torch op hangs forever. :func:`init_worker` therefore pins torch to one thread in every worker
(each worker is one of several processes anyway), and ignores Ctrl-C, which the parent handles
(a converter's bare ``except:`` could otherwise swallow it mid-file and write a wrong output);
an interrupted parent ends its workers with :func:`stop_workers`.
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

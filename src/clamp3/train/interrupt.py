"""Pre-emption: SIGTERM or SIGINT ends a run at the next step boundary, with a checkpoint.

Schedulers (SLURM, Kubernetes, spot instances) send SIGTERM and kill the job after a grace
period; Ctrl-C sends SIGINT. While :class:`StopRequests` is active the signal only sets a
flag; the loop finishes the optimizer step it is in, writes a checkpoint and raises
:class:`TrainingInterrupted`, and ``clamp3 train`` exits with 128 + the signal number (143,
130), the status a shell reports for a process killed by that signal. ``--resume`` then
continues exactly where the checkpoint left off. A second Ctrl-C stops at once.

Under torchrun every rank may see the signal at a different moment; the ranks agree on it
with one all-reduce per step, so all of them checkpoint after the same step.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType

import torch

from clamp3.train.distributed import DistEnv, all_reduce_sum

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingInterrupted(Exception):
    """Raised by :func:`clamp3.train.train` after a stop signal, once the state is saved.

    ``exit_code`` is 128 + the signal number; ``str()`` says where the run stopped and how to
    continue it with ``clamp3 train``; ``stopped`` says the first part only (for commands that
    resume by being run again, such as ``clamp3 demo``).
    """

    def __init__(self, signum: int, where: str):
        self.signum = signum
        self.exit_code = 128 + signum
        self.stopped = f"stopped by {signal.Signals(signum).name} {where}"
        super().__init__(f"{self.stopped}; continue with --resume")


def ignore_stop_signals(_worker_id: int = 0) -> None:
    """For worker processes (data loader, file checks): the parent decides when to stop, and
    a worker killed by the signal would fail the batches the last step still needs (the signal
    reaches them too: Ctrl-C goes to the terminal's process group, SLURM signals every
    process of a job)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


class StopRequests:
    """A context manager: while active (in the main thread) SIGTERM and SIGINT set
    :attr:`signum` instead of ending the process. ``announce`` writes one line to stderr when
    the first signal arrives (the main rank)."""

    def __init__(self, announce: bool = True):
        self.signum: int | None = None
        self.announce = announce
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        self.signum = signum
        if self.announce:
            name = signal.Signals(signum).name
            # os.write, not logging: a handler that takes the logging lock can deadlock.
            message = f"\n{name}: finishing this step, then writing a checkpoint (Ctrl-C again stops now)\n"
            os.write(2, message.encode())

    def agreed(self, env: DistEnv) -> int | None:
        """The stop signal any rank received (SIGTERM before SIGINT), the same on every rank;
        None when there was none. Every rank must call it at the same point."""
        if not env.distributed:
            return self.signum
        flags = [self.signum == signal.SIGTERM, self.signum == signal.SIGINT]
        seen = all_reduce_sum(torch.tensor(flags, dtype=torch.float32, device=env.device))
        if seen[0] > 0:
            return signal.SIGTERM
        return signal.SIGINT if seen[1] > 0 else None

"""Run the windows of many tracks through a front-end in batches of equal length.

Full 5-s windows from any number of files share one forward pass; a short last window waits in
the queue of its exact length (no padding: padding would change the GroupNorm statistics and
the time means, so results would no longer equal the official one-window-at-a-time loop).
Queues are bounded, so memory does not grow with the number or length of the files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from clamp3.audio.windows import Track

# (B, L) float32 normalised windows of one length -> (K, B, D) float32 per-layer rows.
EncodeFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class _Job:
    n_windows: int
    remaining: int
    out: np.ndarray | None = None  # (K, n_windows, D) float32, allocated by the first batch


class WindowBatcher:
    """Collect windows keyed by track id; encode them ``batch_size`` at a time per length.

    ``max_waiting`` bounds the windows held across all queues: past it, the queue holding the
    oldest track's window is run even if not full, so early tracks complete without waiting for
    the end of the input.
    """

    def __init__(self, encode: EncodeFn, batch_size: int, max_waiting: int | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.encode = encode
        self.batch_size = batch_size
        self.max_waiting = max_waiting if max_waiting is not None else 2 * batch_size
        self._queues: dict[int, list[tuple[int, int, np.ndarray]]] = {}
        self._jobs: dict[int, _Job] = {}

    def add(self, key: int, track: Track) -> None:
        """Queue every window of ``track``; full queues run at once. ``track`` is not kept."""
        self._jobs[key] = _Job(n_windows=len(track.bounds), remaining=len(track.bounds))
        for index in range(len(track.bounds)):
            window = track.window(index)
            queue = self._queues.setdefault(len(window), [])
            queue.append((key, index, window))
            if len(queue) >= self.batch_size:
                self._run(len(window))
        while sum(len(q) for q in self._queues.values()) > self.max_waiting:
            oldest = min(self._queues, key=lambda length: self._queues[length][0][0])
            self._run(oldest)

    def flush(self) -> None:
        """Run every waiting window."""
        for length in list(self._queues):
            while length in self._queues:
                self._run(length)

    def done(self, key: int) -> bool:
        job = self._jobs.get(key)
        return job is not None and job.remaining == 0

    def pop(self, key: int) -> np.ndarray:
        """The finished (K, n_windows, D) float32 array of track ``key``."""
        job = self._jobs.pop(key)
        if job.remaining:
            raise RuntimeError(f"track {key} still has {job.remaining} windows to run")
        return job.out

    def _run(self, length: int) -> None:
        queue = self._queues[length]
        batch, rest = queue[: self.batch_size], queue[self.batch_size :]
        if rest:
            self._queues[length] = rest
        else:
            del self._queues[length]
        rows = self.encode(np.stack([w for _, _, w in batch]))  # (K, B, D)
        for b, (key, index, _) in enumerate(batch):
            job = self._jobs[key]
            if job.out is None:
                job.out = np.empty((rows.shape[0], job.n_windows, rows.shape[2]), dtype=np.float32)
            job.out[:, index] = rows[:, b]
            job.remaining -= 1

"""Preparing many files for one pipeline, with MusicXML/MIDI conversions in worker processes.

:class:`Preparer` is what ``clamp3 embed`` runs: files in, :class:`~clamp3.inputs.Prepared`
items (or each bad file's :class:`InputError`) out, in input order, with a crash in a converter
costing only the file that caused it. One file at a time, and texts, go through
:class:`clamp3.pipeline.Clamp3Pipeline` directly.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING

from clamp3.config import SymbolicTowerConfig
from clamp3.inputs import MODALITIES, Prepared, modality_of
from clamp3.tokenizer import TokenizerNotFound
from clamp3.utils.errors import CheckpointError, InputError

if TYPE_CHECKING:
    from clamp3.pipeline import Clamp3Pipeline

Input = str | os.PathLike

# Not a property of one input: the tokenizer or MERT cannot be loaded, or an extra is missing.
# These stop the run once instead of failing (and retrying) every file.
SETUP_ERRORS = (TokenizerNotFound, CheckpointError, ImportError)


def prepare_symbolic_file(path: Input, config: SymbolicTowerConfig, timeout: float | None = None) -> Prepared:
    """Top-level (picklable) so worker processes can run it; see
    :func:`clamp3.pipeline.read_symbolic_file` for ``timeout``."""
    from clamp3.pipeline import read_symbolic_file

    return Prepared("symbolic", read_symbolic_file(path, config, timeout))


def _failed(x: Input, exc: BaseException) -> InputError:
    """An unexpected exception while preparing ``x``, as a per-input error (cause kept for -v)."""
    error = InputError(str(x), f"preparation failed ({type(exc).__name__}: {exc})")
    error.__cause__ = exc
    return error


class Preparer:
    """Turns files into :class:`Prepared` items with one pipeline (which loads the tokenizer
    and the audio front-end on first need). With ``workers`` > 0, MusicXML/MIDI/ABC files are
    converted in that many forked processes (started on first need; :meth:`close` stops them).

    A worker that dies (a converter crash, the OOM killer) breaks the whole pool: the pool is
    restarted and each file that was in it is retried alone, so only the file that kills its
    worker fails and the run goes on.
    """

    def __init__(self, pipeline: Clamp3Pipeline, workers: int = 0, timeout: float | None = None):
        self.pipeline = pipeline
        self.workers = workers
        self.timeout = timeout or None  # seconds per symbolic conversion; 0/None: no limit
        self._pool: Executor | None = None
        self._generation = 0  # bumped on each restart: tells a broken old future from a new one

    def close(self, now: bool = False) -> None:
        """Stop the workers: after their current files, or ``now`` (their work is lost)."""
        if self._pool is not None:
            if now:
                from clamp3.utils.workers import stop_workers

                stop_workers(self._pool)
            else:
                self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def __enter__(self) -> Preparer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        # Interrupted (Ctrl-C, SystemExit): do not wait minutes for the files in the workers.
        self.close(now=exc_type is not None and not issubclass(exc_type, Exception))

    def prepare(self, x: Input, modality: str | None = None) -> Prepared:
        """One file -> :class:`Prepared` (:meth:`Clamp3Pipeline.prepare_file`). Raises ``InputError``."""
        return self.pipeline.prepare_file(x, modality, self.timeout)

    def _prepare_here(self, x: Input, modality: str | None) -> Prepared | InputError:
        try:
            return self.prepare(x, modality)
        except InputError as exc:
            return exc
        except SETUP_ERRORS:
            raise
        except Exception as exc:  # a parser's own error type: this input fails, not the batch
            return _failed(x, exc)

    def _submit(self, inputs: Sequence[Input], modality: str | None) -> dict[int, tuple[int, Future]]:
        """Start the conversion of every existing symbolic file on the workers."""
        config = self.pipeline.config.symbolic
        if self.workers <= 0 or config is None:
            return {}
        futures = {}
        for i, x in enumerate(inputs):
            try:
                kind = modality_of(x)
                wanted = kind == "symbolic" and modality in (None, kind) and os.path.isfile(x)
            except InputError:
                continue  # reported when the input is prepared in order
            if wanted:
                if self._pool is None:
                    from clamp3.utils.workers import fork_pool

                    self._pool = fork_pool(self.workers)
                job = self._pool.submit(prepare_symbolic_file, x, config, self.timeout)
                futures[i] = (self._generation, job)
        return futures

    def _restart(self) -> None:
        from clamp3.utils.workers import fork_pool

        self.close()
        self._pool = fork_pool(self.workers)
        self._generation += 1

    def _collect(self, x: Input, generation: int, future: Future) -> Prepared | InputError:
        try:
            return future.result()
        except InputError as exc:
            return exc
        except BrokenProcessPool:
            pass
        except Exception as exc:
            return _failed(x, exc)
        if generation == self._generation:  # the current pool broke: start a fresh one
            self._restart()
        # Retry alone: the file that killed the pool is then named, the ones queued beside it pass.
        alone = self._pool.submit(prepare_symbolic_file, x, self.pipeline.config.symbolic, self.timeout)
        try:
            return alone.result()
        except InputError as exc:
            return exc
        except BrokenProcessPool:
            self._restart()
            return InputError(x, "the worker process converting it died (a converter crash or out of memory)")
        except Exception as exc:
            return _failed(x, exc)

    def prepare_many(
        self, inputs: Sequence[Input], modality: str | None = None
    ) -> Iterator[Prepared | InputError]:
        """Prepared items (or the ``InputError`` of a bad input) in input order; never raises
        for a bad input, whatever the parser or the worker did with it (an unknown ``modality``
        is the caller's mistake: ``ValueError``)."""
        if modality is not None and modality not in MODALITIES:
            raise ValueError(f"unknown modality {modality!r}; choose {', '.join(MODALITIES)}")
        futures = self._submit(inputs, modality)
        for i, x in enumerate(inputs):
            yield self._collect(x, *futures[i]) if i in futures else self._prepare_here(x, modality)

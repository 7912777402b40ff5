"""Preparing many files for one pipeline, with MusicXML/MIDI conversions in worker processes.

:class:`Preparer` is what ``clamp3 embed`` runs: files in, :class:`~clamp3.inputs.Prepared`
items (or each bad file's :class:`InputError`) out, in input order, with a crash in a converter
costing only the file that caused it. One file at a time, and texts, go through
:class:`clamp3.pipeline.Clamp3Pipeline` directly.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from clamp3.config import SymbolicTowerConfig
from clamp3.inputs import Prepared, check_modality, modality_of
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
    converted in that many forked processes (:class:`clamp3.utils.workers.WorkerPool`, started
    on first need; :meth:`close` stops them): a file that kills its worker (a converter crash,
    the OOM killer) or hangs past ``timeout`` fails alone and the run goes on.
    """

    def __init__(self, pipeline: Clamp3Pipeline, workers: int = 0, timeout: float | None = None):
        self.pipeline = pipeline
        self.workers = workers
        self.timeout = timeout or None  # seconds per symbolic conversion; 0/None: no limit
        from clamp3.utils.workers import WorkerPool

        self._pool = WorkerPool(workers, self.timeout)

    def close(self, now: bool = False) -> None:
        """Stop the workers: after their current files, or ``now`` (their work is lost)."""
        self._pool.close(now)

    def __enter__(self) -> Preparer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        self._pool.__exit__(exc_type)  # interrupted: the workers end at once

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

    def _in_workers(self, inputs: Sequence[Input], modality: str | None) -> list[int]:
        """Positions of the existing symbolic files, which the workers convert."""
        if self.workers <= 0 or self.pipeline.config.symbolic is None:
            return []
        chosen = []
        for i, x in enumerate(inputs):
            try:
                kind = modality_of(x)
                if kind == "symbolic" and modality in (None, kind) and os.path.isfile(x):
                    chosen.append(i)
            except InputError:
                continue  # reported when the input is prepared in order
        return chosen

    def _outcome(self, x: Input, result: object) -> Prepared | InputError:
        from clamp3.utils.workers import WorkerDied, WorkTimeout

        if isinstance(result, (Prepared, InputError)):
            return result
        if isinstance(result, WorkerDied):
            return InputError(x, "the worker process converting it died (a converter crash or out of memory)")
        if isinstance(result, WorkTimeout):
            return InputError(x, f"conversion {result}")
        return _failed(x, result)

    def prepare_many(
        self, inputs: Sequence[Input], modality: str | None = None
    ) -> Iterator[Prepared | InputError]:
        """Prepared items (or the ``InputError`` of a bad input) in input order; never raises
        for a bad input, whatever the parser or the worker did with it (an unknown ``modality``
        is the caller's mistake: ``ValueError``)."""
        check_modality(modality)
        chosen = self._in_workers(inputs, modality)
        outcomes: Iterator = iter(())
        if chosen:
            convert = functools.partial(
                prepare_symbolic_file, config=self.pipeline.config.symbolic, timeout=self.timeout
            )
            outcomes = self._pool.run(convert, [inputs[i] for i in chosen])
        position = {i: n for n, i in enumerate(chosen)}
        ready: dict[int, object] = {}
        for i, x in enumerate(inputs):
            if i not in position:
                yield self._prepare_here(x, modality)
                continue
            while position[i] not in ready:
                outcome = next(outcomes)
                ready[outcome.index] = outcome.value if outcome.ok else outcome.error
            yield self._outcome(x, ready.pop(position[i]))

    def embed_many(
        self, inputs: Sequence[Input], modality: str | None = None, batch_size: int = 32, pooled: bool = True
    ) -> list[tuple[Prepared, np.ndarray] | InputError]:
        """Prepare and embed ``inputs``: per input, in order, ``(item, vector)`` (vector as
        :meth:`Clamp3Pipeline.embed_prepared` returns it) or the ``InputError`` of a bad input.
        A batch the towers reject is embedded item by item, so the item at fault fails alone."""
        outcomes: list = list(self.prepare_many(inputs, modality))
        good = [i for i, outcome in enumerate(outcomes) if not isinstance(outcome, InputError)]
        items = [outcomes[i] for i in good]
        try:
            vectors: list = self.pipeline.embed_prepared(items, batch_size, pooled=pooled)
        except Exception:
            vectors = []
            for i, item in zip(good, items):
                try:
                    vectors.append(self.pipeline.embed_prepared([item], batch_size, pooled=pooled)[0])
                except Exception as exc:
                    vectors.append(InputError(str(inputs[i]), f"embedding failed: {exc}"))
        for i, item, vector in zip(good, items, vectors, strict=True):
            outcomes[i] = vector if isinstance(vector, InputError) else (item, vector)
        return outcomes

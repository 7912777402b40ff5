"""From records to padded batches: item sources, collation and the seeded batch order.

Order and randomness are pure functions of (seed, stage, epoch, position): the global batch
order of an epoch is a seeded permutation and every item gets its own seeded generator for
its augmentations. Hence the data seen at optimizer step s is known from s alone: resuming
needs no loader state, and N processes see exactly the global batches one process would
(each takes its contiguous slice, :func:`clamp3.train.distributed.shard`).
"""

from __future__ import annotations

import json
import os
import zlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clamp3.config import Clamp3Config
from clamp3.embedding import pad_stack
from clamp3.inputs import add_boundary_rows, read_feature_file, read_input_text
from clamp3.train.augment import crop_start, eval_text, full_text, remove_instrument_info, text_dropout
from clamp3.train.config import ContrastiveConfig
from clamp3.train.distributed import shard
from clamp3.train.records import list_symbolic_files, load_records, records_for, resolve_file, split_indices
from clamp3.utils.errors import InputError

__all__ = [
    "BatchPlan",
    "EvalBatches",
    "MicroBatches",
    "PairBatch",
    "PairSource",
    "list_symbolic_files",
    "load_records",
    "pad_stack",
    "split_indices",
]


@dataclass
class PairBatch:
    """A padded text–music batch. ``text_ids`` (B, Lt) int64 padded with the pad id;
    ``music`` (B, Lm, 64) int64 patches or (B, Lm, F) float32 rows, padded with 0; masks
    (B, L) int64 with 1 on real positions."""

    text_ids: torch.Tensor
    text_mask: torch.Tensor
    music: torch.Tensor
    music_mask: torch.Tensor

    def to(self, device: torch.device) -> PairBatch:
        return type(self)(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def __len__(self) -> int:
        return self.text_ids.shape[0]


def load_patchify() -> Callable[..., np.ndarray]:
    """``clamp3.preprocess.patchify``, imported on first use (it needs unidecode)."""
    from clamp3.preprocess import patchify

    return patchify


def file_patches(
    path: Path, strip_default_length: bool, patchify: Callable[..., np.ndarray], transform=None
) -> np.ndarray:
    """An ``.abc``/``.mtf`` file -> (n, 64) patches with BOS/EOS; ``transform`` edits the text."""
    text = read_input_text(path)
    if transform is not None:
        text = transform(text)
    try:
        return np.asarray(patchify(text, strip_default_length=strip_default_length))
    except ValueError as exc:
        raise InputError(path, f"cannot be patched ({exc})") from exc


def load_feature_rows(path: Path, feature_dim: int) -> np.ndarray:
    """An audio feature ``.npy`` ((n, F) or the official (1, n, F)) -> (n + 2, F) float32 with
    the zero BOS/EOS rows (§2.3); read and checked as every other caller reads it."""
    return add_boundary_rows(read_feature_file(path, feature_dim))


class ArrayCache:
    """A least-recently-used cache of the arrays one loader process builds from files, bounded
    in bytes (``max_bytes``; 0 keeps nothing).

    Patching a score is pure Python (~4 ms an item), as much as the whole step of a small
    model; a training set that fits the budget (the demo's corpus: ~10 MB) is patched once per
    file instead of once per visit. A set larger than the budget evicts in visiting order and
    gains nothing, at the cost of a dictionary lookup. Values are stored as given: callers
    must not write into a returned array.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[Any, np.ndarray] = OrderedDict()
        self._bytes = 0

    def get(self, key: Any, build: Callable[[], np.ndarray]) -> np.ndarray:
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = build()
        if value.nbytes <= self.max_bytes:
            self._items[key] = value
            self._bytes += value.nbytes
            while self._bytes > self.max_bytes:
                self._bytes -= self._items.popitem(last=False)[1].nbytes
        return value


# Patched scores kept per loader process (uint8: 64 class ids < 128 per patch).
PATCH_CACHE_BYTES = 256 * 2**20


class PairSource:
    """Text–music pairs of one modality built from M4-RAG records (§3.5, §4.1).

    Training items (``train=True``): text dropout (or all text); a random file of the record;
    symbolic files lose instrument names with ``instrument_removal_p``; text and music longer
    than their segment get a random head/tail/middle window (the head with
    ``truncation="head"``). Evaluation items: the ``analysis`` text, the first file, head windows.
    """

    def __init__(
        self,
        records: list[dict[str, Any]],
        base_dir: Path,
        modality: str,
        tokenizer,
        model_config: Clamp3Config,
        settings: ContrastiveConfig,
        train: bool,
    ):
        self.records = records_for(records, modality)
        if not self.records:
            raise InputError(base_dir, f"no record has a {modality} file")
        self.base_dir = Path(base_dir)
        self.modality = modality
        self.tokenizer = tokenizer
        self.text_cfg = model_config.tower("text")
        self.music_cfg = model_config.tower(modality)
        self.settings = settings
        self.train = train
        self._patchify = load_patchify() if modality == "symbolic" else None
        self._patches = ArrayCache(PATCH_CACHE_BYTES)

    def __len__(self) -> int:
        return len(self.records)

    def _text_ids(self, record: dict[str, Any], rng: np.random.Generator) -> torch.Tensor:
        if not self.train:
            text = eval_text(record)
        else:
            text = text_dropout(record, rng) if self.settings.text_dropout else full_text(record)
        ids = self.tokenizer.encode(text)
        if max(ids) >= self.text_cfg.vocab_size:
            raise InputError(
                f"record {record['id']!r}",
                f"token id {max(ids)} >= the text vocabulary ({self.text_cfg.vocab_size}): "
                "the tokenizer does not belong to this model",
            )
        length = self.text_cfg.segment_length
        start = crop_start(len(ids), length, self._crop_rng(rng))
        return torch.tensor(ids[start : start + length], dtype=torch.long)

    def _music(self, record: dict[str, Any], rng: np.random.Generator) -> torch.Tensor:
        paths = record["filepaths"]
        path = resolve_file(self.base_dir, paths[int(rng.integers(len(paths)))] if self.train else paths[0])
        if self.modality == "symbolic":
            remove = bool(self.train and rng.random() < self.settings.instrument_removal_p)
            array = self._patches.get((path, remove), lambda: self._file_patches(path, remove))
            array = array.astype(np.int64)
        else:
            array = load_feature_rows(path, self.music_cfg.feature_dim)
        length = self.music_cfg.segment_length
        start = crop_start(array.shape[0], length, self._crop_rng(rng))
        return torch.from_numpy(np.ascontiguousarray(array[start : start + length]))

    def _crop_rng(self, rng: np.random.Generator) -> np.random.Generator | None:
        """The generator a training crop draws from; None (the head) in evaluation and with
        ``truncation="head"``."""
        return rng if self.train and self.settings.truncation == "random" else None

    def _file_patches(self, path: Path, remove: bool) -> np.ndarray:
        transform = remove_instrument_info if remove else None
        patches = file_patches(path, self.music_cfg.strip_default_length, self._patchify, transform)
        # uint8 holds every id the patch embedding takes (< 128); anything else is kept as it is
        # so the tower's own check reports it.
        return patches.astype(np.uint8) if patches.max(initial=0) < 256 else patches

    def item(self, index: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(text ids (lt,), music (lm, 64) int64 or (lm, F) float32) of record ``index``."""
        record = self.records[index]
        # Text first, in the official __getitem__'s order (text dropout and its crop, then the
        # file, instrument removal, the patch crop). The draws come from a per-item numpy
        # generator, not Python's `random`, so they are not the official numbers either way;
        # the order only decides which draws each part gets.
        text = self._text_ids(record, rng)
        return text, self._music(record, rng)

    def collate(self, items: list[tuple[torch.Tensor, torch.Tensor]]) -> PairBatch:
        text, text_mask = pad_stack([t for t, _ in items], self.text_cfg.pad_token_id)
        music, music_mask = pad_stack([m for _, m in items], 0)
        return PairBatch(text, text_mask, music, music_mask)


def group_order(order: np.ndarray, groups: np.ndarray, batch: int, rng: np.random.Generator) -> np.ndarray:
    """``order`` (a permutation) rearranged so that each full block of ``batch`` items comes
    from one group where possible: per group, its items in ``order``'s order cut into full
    blocks; the rest (group tails and group -1) in ``order``'s order cut into mixed blocks; the
    full blocks shuffled, the incomplete remainder last (the epoch drops it). Called with a
    block smaller than the batch (``group_size``), consecutive blocks of several groups make
    up one batch."""
    blocks: list[np.ndarray] = []
    rest: list[np.ndarray] = []
    for group in np.unique(groups):
        members = order[groups[order] == group]
        if group < 0:
            rest.append(members)
            continue
        full = len(members) // batch * batch
        blocks += [members[i : i + batch] for i in range(0, full, batch)]
        rest.append(members[full:])
    pool = np.concatenate(rest) if rest else np.zeros(0, dtype=order.dtype)
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    pool = pool[np.argsort(position[pool])]  # back in the permutation's order
    full = len(pool) // batch * batch
    blocks += [pool[i : i + batch] for i in range(0, full, batch)]
    shuffled = [blocks[i] for i in rng.permutation(len(blocks))]
    return np.concatenate([*shuffled, pool[full:]]).astype(order.dtype)


def record_groups(records: list[dict[str, Any]], key: str) -> tuple[int, ...]:
    """A group index per record from the value at the dotted ``key`` (e.g. ``facts.collection``);
    records without it get -1. Indices follow the sorted distinct values, so they are stable.
    ``ValueError`` when no record has the field: a misspelt ``group_by`` would otherwise train
    on random batches without a word."""
    values = []
    for record in records:
        value: Any = record
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        values.append(None if value is None else json.dumps(value, sort_keys=True))
    index = {v: i for i, v in enumerate(sorted({v for v in values if v is not None}))}
    if records and not index:
        raise ValueError(f"group_by {key!r}: no training record has this field (dotted for nested fields)")
    return tuple(-1 if v is None else index[v] for v in values)


def stage_salt(name: str) -> int:
    """A per-stage seed component, so stages of one run draw different orders."""
    return zlib.crc32(name.encode("utf-8"))


@dataclass(frozen=True)
class BatchPlan:
    """Which items form micro-batch k, for every k: a pure function of the fields.

    Each epoch is a seeded permutation cut into ``n_items // batch_size`` global batches (the
    remainder is dropped, as the official truncates the data to a multiple of the batch).
    With ``groups`` (a group index per item, -1 for none), whole batches are drawn from one
    group wherever the group has a batch's worth of items left: the in-batch negatives are then
    the hard ones (pieces of the same collection), not pieces any collection label tells apart.
    Items left over in their group, and ungrouped ones, fill mixed batches; batches are shuffled.
    With ``group_size`` (a divisor of ``batch_size``), blocks of that many items come from one
    group and a batch holds ``batch_size / group_size`` blocks: e.g. 8 pieces x their 4 keys
    (``group_by="facts.group"`` over transposed copies), hard negatives beside easy ones.
    """

    n_items: int
    batch_size: int
    seed: int
    salt: int
    rank: int = 0
    world_size: int = 1
    groups: tuple[int, ...] | None = None
    group_size: int | None = None

    @property
    def batches_per_epoch(self) -> int:
        return self.n_items // self.batch_size

    def epoch_order(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.salt, epoch])
        order = rng.permutation(self.n_items)
        if self.groups is None:
            return order
        return group_order(order, np.asarray(self.groups), self.group_size or self.batch_size, rng)

    def item_rng(self, epoch: int, position: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.salt, epoch, position, 1])

    def local_items(self, k: int) -> list[tuple[int, np.random.Generator]]:
        """(item index, its generator) for this rank's share of global micro-batch ``k``."""
        epoch, within = divmod(k, self.batches_per_epoch)
        order = self.epoch_order(epoch)
        positions = list(range(within * self.batch_size, (within + 1) * self.batch_size))
        mine = shard(positions, self.rank, self.world_size)
        return [(int(order[p]), self.item_rng(epoch, p)) for p in mine]


class MicroBatches(torch.utils.data.Dataset):
    """Micro-batches ``start .. stop - 1`` of a plan, collated (for a ``DataLoader`` with
    ``batch_size=None``, so workers build whole batches)."""

    def __init__(self, source, plan: BatchPlan, start: int, stop: int):
        self.source, self.plan, self.start, self.stop = source, plan, start, stop

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __getitem__(self, i: int):
        pairs = self.plan.local_items(self.start + i)
        return self.source.collate([self.source.item(index, rng) for index, rng in pairs])


class EvalBatches(torch.utils.data.Dataset):
    """The evaluation set in file order, in global batches of ``batch_size`` (the last may be
    smaller; no item is dropped), this rank's share of each; item ``i`` always gets the same
    generator (M3 uses it to choose the patches it reconstructs)."""

    def __init__(self, source, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        self.source, self.batch_size, self.seed = source, batch_size, seed
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return -(-len(self.source) // self.batch_size)

    def global_size(self, i: int) -> int:
        return min(self.batch_size, len(self.source) - i * self.batch_size)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        """(this rank's share of global batch ``i``, how many of its rows are real items).

        A share can be empty (a last batch, or a whole set, smaller than the number of
        ranks). Such a rank still runs the forward, because features are gathered across
        ranks, on the batch's first item as a placeholder with 0 real rows, which the task
        leaves out of every metric.
        """
        positions = list(range(i * self.batch_size, i * self.batch_size + self.global_size(i)))
        mine = shard(positions, self.rank, self.world_size)
        rows = len(mine)
        items = [self.source.item(p, np.random.default_rng([self.seed, p, 2])) for p in mine or positions[:1]]
        return self.source.collate(items), rows


def without_bad_files(records: list[dict[str, Any]], base_dir: Path, bad: Mapping[str, str]) -> list[dict]:
    """Records with the files in ``bad`` (absolute paths, :mod:`clamp3.train.screening`) taken
    out of ``filepaths``; a record left with no file is dropped."""
    out = []
    for record in records:
        paths = [p for p in record["filepaths"] if os.path.abspath(resolve_file(base_dir, p)) not in bad]
        if paths:
            out.append({**record, "filepaths": paths})
    return out


def load_pair_split(
    train_path: str, eval_path: str | None, fraction: float, seed: int
) -> tuple[list[dict], list[dict], Path, Path]:
    """(train records, eval records, train base dir, eval base dir) for a contrastive stage.
    Files are not checked here: :mod:`clamp3.train.screening` has done it, and the held-out
    split is drawn over all records, so it does not move when a file turns out bad."""
    records = load_records(train_path, check_files=False)
    base = Path(train_path).parent
    if eval_path:
        return records, load_records(eval_path, check_files=False), base, Path(eval_path).parent
    # Two at least: the validation of a contrastive stage ranks each text among the held-out
    # music, and one item is always ranked first at loss 0, so every later checkpoint would
    # tie with the first and the "best" model would be the first one validated.
    train_idx, eval_idx = split_indices(len(records), fraction, seed, minimum=2)
    return [records[i] for i in train_idx], [records[i] for i in eval_idx], base, base

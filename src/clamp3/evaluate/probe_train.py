"""Training a :class:`~clamp3.evaluate.probe.LinearProbe` on frozen embeddings.

Differences from the official ``classification/train_cls.py`` (see
``official-implementation.md`` §1): the loss is cross-entropy on the *logits* (the official
model applies a softmax first and feeds probabilities into ``CrossEntropyLoss``, which
squashes the gradients), training uses shuffled mini-batches instead of batch size 1,
features are standardised with training-split statistics, classes can be balanced, and
training stops early on the loss of a stratified, seeded validation split.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from clamp3.evaluate.probe import LinearProbe

BALANCE_MODES = ("weight", "sample", "none")
log = logging.getLogger(__name__)


@dataclass
class ProbeSettings:
    """How to train a probe (architecture is fixed: one linear layer)."""

    multi_label: bool = False
    val_split: float = 0.2  # fraction held out for early stopping and the reported metrics
    balance: str = "weight"  # weight: weighted loss; sample: class-balanced resampling; none
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    max_epochs: int = 200
    patience: int = 15  # epochs without a lower validation loss (by min_delta) before stopping
    min_delta: float = 1e-4
    seed: int = 0
    tune_thresholds: bool = False  # multi-label: per-label F1-optimal threshold on validation

    def __post_init__(self) -> None:
        if self.balance not in BALANCE_MODES:
            raise ValueError(f"balance must be one of {BALANCE_MODES}, got {self.balance!r}")
        if not 0.0 <= self.val_split < 1.0:
            raise ValueError(f"val_split must lie in [0, 1), got {self.val_split}")
        if self.batch_size < 1 or self.max_epochs < 1:
            raise ValueError("batch_size and max_epochs must be positive")
        if not (self.lr > 0 and self.weight_decay >= 0 and self.patience >= 1):
            raise ValueError(
                f"lr must be positive, weight_decay at least 0 and patience at least 1 epoch, got "
                f"lr={self.lr}, weight_decay={self.weight_decay}, patience={self.patience}"
            )
        if self.tune_thresholds and not self.multi_label:
            raise ValueError("tune_thresholds (--tune-thresholds) needs a multi-label probe (--multi-label)")


def split_indices(targets: np.ndarray, val_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/validation split -> sorted index arrays (train, val).

    Single-label targets (N,) are split per class (stratified): each class with at least two
    items puts ``round(n_c * val_split)`` (at least one) into validation and keeps at least
    one for training. Multi-hot targets (N, C) are split at random, since exact stratification
    over label combinations is rarely possible.
    """
    rng = np.random.default_rng(seed)
    n = len(targets)
    if val_split == 0.0:
        return np.arange(n), np.arange(0)
    if targets.ndim == 2:
        order = rng.permutation(n)
        n_val = min(max(round(n * val_split), 1), n - 1)
        return np.sort(order[n_val:]), np.sort(order[:n_val])
    val = []
    for c in np.unique(targets):
        members = rng.permutation(np.flatnonzero(targets == c))
        if len(members) >= 2:
            val.extend(members[: min(max(round(len(members) * val_split), 1), len(members) - 1)])
    val = np.sort(np.asarray(val, dtype=np.int64))
    return np.setdiff1d(np.arange(n), val), val


def _loss_function(train_targets: np.ndarray, n_classes: int, settings: ProbeSettings) -> nn.Module:
    """Cross-entropy (single-label) or BCE (multi-label) on logits, weighted when balancing."""
    weighted = settings.balance == "weight"
    if settings.multi_label:
        positives = train_targets.sum(axis=0).astype(np.float64)
        negatives = len(train_targets) - positives
        # pos_weight = negatives / positives makes each label's positives count as much as its negatives.
        pos_weight = np.where(positives > 0, negatives / np.maximum(positives, 1), 1.0)
        return nn.BCEWithLogitsLoss(
            pos_weight=torch.tensor(pos_weight, dtype=torch.float32) if weighted else None
        )
    counts = np.bincount(train_targets, minlength=n_classes).astype(np.float64)
    # "balanced" weights n / (C * n_c): every class contributes the same total weight.
    weights = np.where(counts > 0, len(train_targets) / (n_classes * np.maximum(counts, 1)), 0.0)
    return nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32) if weighted else None)


def _sampling_weights(train_targets: np.ndarray) -> torch.Tensor:
    """Per-item weights so that classes (or, for tagging, each item's rarest label) are drawn equally."""
    if train_targets.ndim == 1:
        counts = np.bincount(train_targets)
        return torch.tensor(1.0 / counts[train_targets], dtype=torch.float64)
    freq = train_targets.sum(axis=0).astype(np.float64)
    inverse = np.where(train_targets, 1.0 / np.maximum(freq, 1), 0.0).max(axis=1)
    inverse[inverse == 0] = 1.0 / len(train_targets)  # items without any label
    return torch.tensor(inverse, dtype=torch.float64)


def _batches(n: int, settings: ProbeSettings, sample_weights: torch.Tensor | None, gen: torch.Generator):
    """Index batches for one epoch: a shuffled pass, or n draws with replacement when resampling."""
    if sample_weights is not None:
        order = torch.multinomial(sample_weights, n, replacement=True, generator=gen)
    else:
        order = torch.randperm(n, generator=gen)
    return torch.split(order, settings.batch_size)


def _fit_linear(
    z_train: torch.Tensor,
    t_train: torch.Tensor,
    z_val: torch.Tensor,
    t_val: torch.Tensor,
    n_classes: int,
    loss_fn: nn.Module,
    settings: ProbeSettings,
    show_progress: bool,
) -> tuple[nn.Linear, list[dict]]:
    """Mini-batch AdamW on a linear layer; keeps the weights of the lowest validation loss."""
    from tqdm.auto import tqdm

    linear = nn.Linear(z_train.shape[1], n_classes)
    # Zero init: the problem is convex, and this keeps training independent of the global RNG.
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    optimizer = torch.optim.AdamW(linear.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    gen = torch.Generator().manual_seed(settings.seed)
    sample_weights = _sampling_weights(t_train.numpy()) if settings.balance == "sample" else None
    has_val = len(z_val) > 0
    best = (float("inf"), 0, {k: v.clone() for k, v in linear.state_dict().items()})
    history = []
    bar = tqdm(range(settings.max_epochs), desc="probe", unit="epoch", disable=not show_progress)
    for epoch in bar:
        total = 0.0
        for idx in _batches(len(z_train), settings, sample_weights, gen):
            loss = loss_fn(linear(z_train[idx]), t_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        with torch.no_grad():
            train_loss = total / len(z_train)
            val_loss = float(loss_fn(linear(z_val), t_val)) if has_val else train_loss
        history.append(
            {"epoch": epoch + 1, "train_loss": round(train_loss, 6), "val_loss": round(val_loss, 6)}
        )
        bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}")
        if val_loss < best[0] - settings.min_delta:
            best = (val_loss, epoch + 1, {k: v.clone() for k, v in linear.state_dict().items()})
        elif has_val and epoch + 1 - best[1] >= settings.patience:
            break
    bar.close()
    linear.load_state_dict(best[2])
    history.append({"best_epoch": best[1], "best_val_loss": round(best[0], 6)})
    if _still_falling(history, settings):
        steps = settings.max_epochs * -(-len(z_train) // settings.batch_size)  # batches per epoch
        log.warning(
            "probe: the %s loss was still falling at the last of %d epochs (%d optimizer steps): "
            "the probe may be under-trained; raise --epochs or --lr",
            "validation" if has_val else "training",
            settings.max_epochs,
            steps,
        )
    return linear, history


def _still_falling(history: list[dict], settings: ProbeSettings) -> bool:
    """True when the epoch budget, not early stopping, ended training while the (validation)
    loss still fell by more than 1 % over the last ``patience`` epochs: an under-trained probe.
    ``history`` is :func:`_fit_linear`'s, its last entry the summary."""
    epochs = history[:-1]
    if history[-1]["best_epoch"] != settings.max_epochs or len(epochs) <= settings.patience:
        return False
    before, last = epochs[-1 - settings.patience]["val_loss"], epochs[-1]["val_loss"]
    return last < 0.99 * before


@contextlib.contextmanager
def _single_thread() -> Iterator[None]:
    """Run torch on one thread: mini-batches of a linear layer are far too small to split, and
    thread hand-offs on a busy machine made each step ~50x slower (0.4 ms vs 27 ms measured)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _tune_thresholds(probabilities: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per-label threshold maximising F1 on (probabilities, targets); 0.5 for labels without positives."""
    from sklearn.metrics import precision_recall_curve

    thresholds = np.full(targets.shape[1], 0.5, dtype=np.float32)
    for c in range(targets.shape[1]):
        if not targets[:, c].any() or targets[:, c].all():
            continue
        precision, recall, cuts = precision_recall_curve(targets[:, c], probabilities[:, c])
        f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
        best = int(np.argmax(f1))
        # Halfway to the next lower score: the lowest F1-optimal cut sits exactly on a positive
        # item's score, which leaves no margin for unseen items.
        thresholds[c] = (cuts[best] + cuts[best - 1]) / 2 if best > 0 else cuts[best] / 2
    return thresholds


def train_probe(
    x: np.ndarray,
    targets: np.ndarray,
    labels: list[str],
    settings: ProbeSettings | None = None,
    show_progress: bool = False,
) -> LinearProbe:
    """Fit a probe on embeddings ``x`` (N, D) (as stored, not normalised).

    ``targets``: int class indices (N,) into ``labels``, or multi-hot bool (N, C) when
    ``settings.multi_label``. Returns the probe with the weights of the epoch with the lowest
    validation loss; ``probe.info`` holds the settings, the split sizes, the loss history and
    ``metrics`` (``val`` when there is a validation split, and ``train``).
    """
    settings = settings or ProbeSettings()
    x = np.asarray(x, dtype=np.float32)
    targets = np.asarray(targets, dtype=bool if settings.multi_label else np.int64)
    if x.ndim != 2 or len(x) != len(targets) or len(x) < 2:
        raise ValueError(f"need embeddings (N >= 2, D) and N targets, got {x.shape} and {targets.shape}")
    if settings.multi_label != (targets.ndim == 2):
        raise ValueError("multi-label training needs multi-hot (N, C) targets; single-label needs (N,)")
    if not np.isfinite(x).all():
        raise ValueError("embeddings contain NaN or infinity")
    train_idx, val_idx = split_indices(targets, settings.val_split, settings.seed)
    mean = x[train_idx].mean(axis=0)
    scale = x[train_idx].std(axis=0)
    scale[scale < 1e-6] = 1.0  # constant features: leave them centred, do not blow them up
    z = torch.from_numpy((x - mean) / scale)
    t = torch.from_numpy(targets.astype(np.float32) if settings.multi_label else targets)
    loss_fn = _loss_function(targets[train_idx], len(labels), settings)
    with _single_thread():
        linear, history = _fit_linear(
            z[train_idx], t[train_idx], z[val_idx], t[val_idx], len(labels), loss_fn, settings, show_progress
        )
    probe = LinearProbe(
        labels=list(labels),
        weight=linear.weight.detach().numpy().astype(np.float32),
        bias=linear.bias.detach().numpy().astype(np.float32),
        mean=mean.astype(np.float32),
        scale=scale.astype(np.float32),
        multi_label=settings.multi_label,
    )
    if settings.multi_label:
        tune_on = val_idx if len(val_idx) else train_idx
        probe.thresholds = (
            _tune_thresholds(probe.probabilities(x[tune_on]), targets[tune_on])
            if settings.tune_thresholds
            else np.full(len(labels), 0.5, dtype=np.float32)
        )
    metrics = {"train": probe.evaluate(x[train_idx], targets[train_idx])}
    if len(val_idx):
        metrics = {"val": probe.evaluate(x[val_idx], targets[val_idx]), **metrics}
    probe.info = {
        "settings": asdict(settings),
        "data": {"n_train": int(len(train_idx)), "n_val": int(len(val_idx))},
        "metrics": metrics,
        "history": history,
    }
    return probe

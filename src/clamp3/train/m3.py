"""M3 pre-training: masked patch reconstruction (§4.3; CLaMP 2's M3).

Of each item's patches, ``ceil(0.45 n)`` are selected (BOS/EOS patches included, as the
official). Each selected patch independently becomes all-mask (id 3) with p 0.8, has its
characters shuffled between its BOS and its EOS with p 0.1, or is kept with p 0.1. The
encoder (the symbolic tower) reads the corrupted sequence; a 3-layer GPT-2 over the 64
characters of a patch (vocabulary 128) rebuilds every selected patch from its encoder
feature, which takes the place of the BOS embedding. Evaluation keeps the selected patches
unchanged (the official eval mode).

State-dict names follow the official ``M3Model``: ``encoder.*`` is the symbolic tower
(``symbolic_model.*`` in a :class:`~clamp3.Clamp3Model`) and ``decoder.base.transformer.*`` /
``decoder.base.lm_head.weight`` (tied to ``wte``) the decoder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clamp3.config import Clamp3Config, SymbolicTowerConfig
from clamp3.preprocess.patches import PATCH_SIZE
from clamp3.train.augment import crop_start
from clamp3.train.config import M3Config
from clamp3.train.data import file_patches, load_patchify, pad_stack
from clamp3.train.distributed import all_reduce_sum

PAD_ID, BOS_ID, EOS_ID, MASK_ID = 0, 1, 2, 3
KEEP, MASK, SHUFFLE = 0, 1, 2  # what happened to a selected patch
DECODER_FILE = "m3_decoder.safetensors"


def m3_model_config(config: Clamp3Config) -> Clamp3Config:
    """The encoder-only config M3 trains and saves: ``config``'s symbolic tower, no projection
    (like the ``m3`` preset). It loads with ``Clamp3Model.from_pretrained``."""
    symbolic = config.tower("symbolic")
    name = config.name if config.name.endswith("m3") else f"{config.name}-m3"
    return Clamp3Config(
        name=name,
        text=None,
        symbolic=symbolic,
        audio=None,
        projection_dim=symbolic.encoder.hidden_size,
        projection=False,
    )


def mask_patches(
    patches: np.ndarray, rng: np.random.Generator, settings: M3Config, train: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Corrupt (n, 64) patches for M3.

    Returns (inputs (n, 64) same dtype, selected (n,) bool, kind (n,) int8 with KEEP / MASK /
    SHUFFLE for selected patches, KEEP elsewhere). Exactly ``ceil(mask_ratio * n)`` patches are
    selected; with ``train=False`` they are all kept.
    """
    n = patches.shape[0]
    chosen = rng.permutation(n)[: math.ceil(settings.mask_ratio * n)]
    selected = np.zeros(n, dtype=bool)
    selected[chosen] = True
    kind = np.full(n, KEEP, dtype=np.int8)
    inputs = patches.copy()
    if not train:
        return inputs, selected, kind
    draw = rng.random(len(chosen))
    kind[chosen[draw < settings.mask_p]] = MASK
    kind[chosen[(draw >= settings.mask_p) & (draw < settings.mask_p + settings.shuffle_p)]] = SHUFFLE
    inputs[kind == MASK] = MASK_ID
    for i in np.flatnonzero(kind == SHUFFLE):
        patch = inputs[i]
        eos = np.flatnonzero(patch == EOS_ID)
        end = int(eos[0]) if eos.size else patch.shape[0]  # long bars lost their EOS
        patch[1:end] = patch[1:end][rng.permutation(max(0, end - 1))]
    return inputs, selected, kind


@dataclass
class PatchBatch:
    """Encoder input ``patches`` (B, L, 64) int64 (corrupted), ``mask`` (B, L) int64,
    ``selected`` (B, L) bool and the original ``targets`` (B, L, 64) int64."""

    patches: torch.Tensor
    mask: torch.Tensor
    selected: torch.Tensor
    targets: torch.Tensor

    def to(self, device: torch.device) -> PatchBatch:
        return type(self)(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def __len__(self) -> int:
        return self.patches.shape[0]


class PatchSource:
    """M3 items from ``.abc`` / ``.mtf`` files: patchify, a random (train) or head window of
    ``segment_length`` patches, then :func:`mask_patches`."""

    def __init__(self, files: list[Path], tower: SymbolicTowerConfig, settings: M3Config, train: bool):
        self.files, self.tower, self.settings, self.train = list(files), tower, settings, train
        self._patchify = load_patchify()

    def __len__(self) -> int:
        return len(self.files)

    def item(self, index: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        patches = file_patches(self.files[index], self.tower.strip_default_length, self._patchify)
        patches = patches.astype(np.int64)
        length = self.tower.segment_length
        start = crop_start(patches.shape[0], length, rng if self.train else None)
        patches = patches[start : start + length]
        inputs, selected, _ = mask_patches(patches, rng, self.settings, self.train)
        return inputs, selected, patches

    def collate(self, items: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> PatchBatch:
        inputs, mask = pad_stack([torch.from_numpy(i) for i, _, _ in items])
        selected, _ = pad_stack([torch.from_numpy(s) for _, s, _ in items], False)
        targets, _ = pad_stack([torch.from_numpy(t) for _, _, t in items])
        return PatchBatch(inputs, mask, selected, targets)


class PatchDecoder(nn.Module):
    """GPT-2 over one patch's characters; official name ``decoder`` with ``base`` inside."""

    def __init__(self, hidden_size: int, num_layers: int, num_heads: int, patch_size: int, num_classes: int):
        super().__init__()
        from transformers import GPT2Config, GPT2LMHeadModel

        # Official: vocab 128, 64 positions, hidden = encoder hidden, 3 layers, hidden // 64
        # heads (12 at 768, the encoder's count; the encoder's count is used so small
        # presets work), FFN 4 x hidden, GPT-2 default dropouts, tied output layer.
        # The activation is GPT-2's tanh-approximated GELU (the official "gelu_new") as
        # torch's fused kernel instead of transformers' five-op Python formula: the same
        # function to float rounding, and the demo's M3 stage takes about 0.75x the time.
        config = GPT2Config(
            vocab_size=num_classes,
            n_positions=patch_size,
            n_embd=hidden_size,
            n_layer=num_layers,
            n_head=num_heads,
            bos_token_id=BOS_ID,
            eos_token_id=EOS_ID,
            activation_function="gelu_pytorch_tanh",
        )
        self.base = GPT2LMHeadModel(config)

    def forward(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """features (K, H), targets (K, 64) int64 -> next-character logits (K, 64, 128).

        Position 0 reads the feature instead of the BOS embedding; position j predicts
        character j + 1. Padding is masked out of attention.
        """
        embeds = self.base.transformer.wte(targets)
        embeds = torch.cat([features.unsqueeze(1).to(embeds.dtype), embeds[:, 1:]], dim=1)
        attention = (targets != PAD_ID).long()
        return self.base(inputs_embeds=embeds, attention_mask=attention).logits


def build_decoder(tower: SymbolicTowerConfig, num_layers: int = 3) -> PatchDecoder:
    enc = tower.encoder
    return PatchDecoder(enc.hidden_size, num_layers, enc.num_heads, PATCH_SIZE, tower.num_classes)


class M3Task(nn.Module):
    """Encoder (``model.symbolic_model``) + decoder; ``forward`` returns the reconstruction loss.

    The loss is the mean cross-entropy over every non-padding target character of the
    *global* batch: each rank divides its summed loss by the all-reduced character count
    (times the world size, which DDP's gradient averaging divides out again), so N processes
    give the gradient of one process on the same global batch.
    """

    def __init__(self, model, decoder: PatchDecoder):
        super().__init__()
        self.model = model
        self.decoder = decoder

    def forward(self, batch: PatchBatch, rows: int | None = None) -> dict[str, torch.Tensor]:
        """The loss and accuracy; with ``rows`` only the first ``rows`` items count (the
        others are evaluation placeholders, see :class:`~clamp3.train.data.EvalBatches`)."""
        hidden = self.model.symbolic_hidden_states(batch.patches, batch.mask)
        targets = batch.targets[batch.selected]
        logits = self.decoder(hidden[batch.selected], targets)
        labels = targets[:, 1:]
        losses = F.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none"
        )
        valid = labels != PAD_ID
        if rows is not None:
            # Zero weights rather than fewer rows: the encoders cannot run on an empty batch.
            item_of = torch.nonzero(batch.selected)[:, 0]
            valid = valid & (item_of < rows).unsqueeze(1)
        valid = valid.reshape(-1)
        total = all_reduce_sum(valid.sum().float()).clamp_min(1.0)
        world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
        loss = (losses * valid).sum() * world / total
        correct = ((logits[:, :-1].detach().argmax(-1) == labels).reshape(-1) & valid).sum()
        accuracy = correct.float() * world / total
        return {"loss": loss, "accuracy": accuracy}

    def official_state_dict(self) -> dict[str, torch.Tensor]:
        """Parameters under the official ``M3Model`` names (``encoder.*``, ``decoder.*``),
        without the unused BERT pooler the official file also stores."""
        state = {f"encoder.{k}": v for k, v in self.model.symbolic_model.state_dict().items()}
        state.update({f"decoder.{k}": v for k, v in self.decoder.state_dict().items()})
        return state


def load_decoder_state(source: str | Path) -> dict[str, torch.Tensor] | None:
    """Decoder weights (names relative to ``decoder``) of an M3 run directory or an official
    M3 ``.pth``; None when the source has none (the decoder then starts fresh)."""
    path = Path(source)
    if path.is_dir():
        file = path / DECODER_FILE
        if not file.is_file():
            return None
        from safetensors.torch import load_file

        return load_file(str(file))
    if path.is_file():
        from clamp3.checkpoints import load_official_state

        state = load_official_state(path)
        decoder = {k[len("decoder.") :]: v for k, v in state.items() if k.startswith("decoder.")}
        return decoder or None
    return None


def save_decoder(decoder: PatchDecoder, directory: Path) -> None:
    """Write the decoder next to a saved encoder, atomically (the tied output layer once)."""
    from safetensors.torch import save_file

    from clamp3.utils.io import atomic_path

    state = {k: v.detach().cpu().contiguous() for k, v in decoder.state_dict().items()}
    state.pop("base.lm_head.weight", None)  # tied to base.transformer.wte.weight
    with atomic_path(directory / DECODER_FILE) as tmp:
        save_file(state, str(tmp))


def load_decoder(decoder: PatchDecoder, state: dict[str, torch.Tensor]) -> None:
    """Load decoder weights saved by :func:`save_decoder` or taken from an official file."""
    state = dict(state)
    state.setdefault("base.lm_head.weight", state["base.transformer.wte.weight"])
    decoder.load_state_dict(state, strict=True)
    decoder.base.tie_weights()

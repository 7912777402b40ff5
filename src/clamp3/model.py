"""Clamp3Model: three towers, three projections, masked-mean pooling.

Prepared tensors in, features out (``get_*_features``, ``*_hidden_states``); item-level
embedding with the official segmentation lives in :mod:`clamp3.embedding` and is reached
through ``embed_text_ids`` / ``embed_patches`` / ``embed_audio_features``. Raw inputs (strings,
files, recordings) are the pipeline's (:class:`clamp3.pipeline.Clamp3Pipeline`): this module
knows tensors only.

Towers are materialised lazily from the weight source: a text-only job never reads, builds
or allocates the symbolic or audio tower.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from clamp3 import checkpoints
from clamp3.config import Clamp3Config, load_preset
from clamp3.embedding import embed_items, prepare_audio, prepare_patches, prepare_text
from clamp3.towers import build_audio_tower, build_symbolic_tower, build_text_tower
from clamp3.towers.packed import Packing, packed_forward, segment_means, unpad
from clamp3.utils.meta import params_on_meta


@dataclass
class Clamp3Output:
    """Projected pooled features of a text batch and a music batch, (B, D) each."""

    text_features: torch.Tensor
    music_features: torch.Tensor


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of hidden (B, L, H) over positions where mask (B, L) is 1 -> (B, H), in fp32."""
    mask = mask.to(torch.float32).unsqueeze(-1)
    return (hidden.to(torch.float32) * mask).sum(1) / mask.sum(1).clamp_min(1.0)


class Clamp3Model(nn.Module):
    """CLaMP 3. Attribute names are the official state-dict prefixes: ``text_model``,
    ``text_proj``, ``symbolic_model``, ``symbolic_proj``, ``audio_model``, ``audio_proj``.

    ``modalities`` selects the towers to build now (default: all the config has); the others
    are built on first use when the model came from ``from_pretrained``.
    """

    def __init__(self, config: Clamp3Config, modalities: Sequence[str] | None = None):
        super().__init__()
        self.config = config
        self._source: checkpoints.WeightSource | None = None
        # Follows .to(device/dtype) so lazily built towers land where the rest of the model is.
        self.register_buffer("_anchor", torch.zeros(0), persistent=False)
        for modality in config.modalities if modalities is None else modalities:
            tower, proj = self._build(modality)
            setattr(self, f"{modality}_model", tower)
            setattr(self, f"{modality}_proj", proj)

    # ----------------------------------------------------------------------------- building
    def _build(self, modality: str) -> tuple[nn.Module, nn.Module]:
        cfg = self.config.tower(modality)
        if modality == "text":
            tower: nn.Module = build_text_tower(cfg.encoder, cfg.vocab_size, cfg.pad_token_id)
        elif modality == "symbolic":
            tower = build_symbolic_tower(cfg.encoder, num_classes=cfg.num_classes)
        else:
            if cfg.feature_dim != cfg.encoder.hidden_size:
                raise ValueError("audio feature_dim must equal the audio encoder's hidden_size")
            tower = build_audio_tower(cfg.encoder)
        proj: nn.Module = (
            nn.Linear(cfg.encoder.hidden_size, self.config.projection_dim)
            if self.config.projection
            else nn.Identity()
        )
        return tower, proj

    def has_tower(self, modality: str) -> bool:
        return f"{modality}_model" in self._modules

    def require(self, modality: str) -> None:
        """Make sure the tower for ``modality`` exists, loading it from the source if needed."""
        if self.has_tower(modality):
            return
        self.config.tower(modality)  # raises a clear error when the model has no such tower
        if self._source is None:
            raise RuntimeError(f"the {modality} tower was not built and there is no weight source")
        # Loading may be triggered inside torch.inference_mode (first embed call); weights made
        # there would be inference tensors, unusable for training or version tracking.
        with torch.inference_mode(False), torch.no_grad():
            self._load_tower(modality)

    def _load_tower(self, modality: str) -> None:
        assert self._source is not None
        with params_on_meta():
            tower, proj = self._build(modality)
        prefix = (f"{modality}_model.", f"{modality}_proj.")
        state = {}
        for name in sorted(self._source.names):
            if name.startswith(prefix):
                state[name] = self._source.get(name).to(self._anchor.dtype)
        tower_state = {k[len(prefix[0]) :]: v for k, v in state.items() if k.startswith(prefix[0])}
        proj_state = {k[len(prefix[1]) :]: v for k, v in state.items() if k.startswith(prefix[1])}
        tower.load_state_dict(tower_state, strict=True, assign=True)
        proj.load_state_dict(proj_state, strict=True, assign=True)
        tower.to(self._anchor.device).eval()
        proj.to(self._anchor.device).eval()
        tower.train(self.training)
        setattr(self, f"{modality}_model", tower)
        setattr(self, f"{modality}_proj", proj)

    # ----------------------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(
        cls,
        source: str | os.PathLike,
        *,
        config: Clamp3Config | str | None = None,
        modalities: Sequence[str] | None = (),
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> Clamp3Model:
        """Load a converted directory, an official ``.pth`` (CLaMP 3, CLaMP 2 or M3) or a tag.

        ``modalities`` lists towers to load now; the default ``()`` loads each tower on first
        use, ``None`` loads all of them. Every key of the source is checked against the
        architecture up front (missing or unexpected keys raise ``CheckpointError``).
        """
        src = checkpoints.resolve(source, config)
        model = cls(src.config, modalities=())
        checkpoints.check_keys(model.expected_state_shapes(), src)
        model._source = src
        model.eval()
        model.to(device=device, dtype=dtype)
        for modality in src.config.modalities if modalities is None else modalities:
            model.require(modality)
        return model

    def expected_state_shapes(self) -> dict[str, torch.Size]:
        """Every key (and shape) a complete checkpoint of this architecture holds."""
        shapes = {}
        with params_on_meta():
            for modality in self.config.modalities:
                tower, proj = self._build(modality)
                for prefix, module in ((f"{modality}_model.", tower), (f"{modality}_proj.", proj)):
                    shapes.update({prefix + k: v.shape for k, v in module.state_dict().items()})
        return shapes

    def load_all(self) -> Clamp3Model:
        for modality in self.config.modalities:
            self.require(modality)
        return self

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (all towers, fp32) atomically."""
        from safetensors.torch import save_file

        from clamp3.utils.io import atomic_path

        self.load_all()
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in self.state_dict().items()}
        with atomic_path(out / checkpoints.WEIGHTS_NAME) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "pt", "clamp3_config": self.config.name})
        with atomic_path(out / checkpoints.CONFIG_NAME) as tmp:
            self.config.save(tmp)
        if self.asset_directory is not None:  # the tokenizer travels with the weights
            from clamp3.tokenizer import copy_tokenizer_files

            copy_tokenizer_files(self.asset_directory, out)
        return out

    @classmethod
    def from_preset(cls, name: str, seed: int | None = None) -> Clamp3Model:
        """A randomly initialised model of a named architecture (for training and tests)."""
        if seed is not None:
            torch.manual_seed(seed)
        return cls(load_preset(name))

    # ----------------------------------------------------------------------------- where from
    @property
    def weight_source(self) -> checkpoints.WeightSource | None:
        """Where the weights were loaded from (``None`` for a model built in memory); read by
        :mod:`clamp3.model_identity` to fingerprint towers that are not loaded yet."""
        return self._source

    @property
    def source_directory(self) -> Path | None:
        """The ``save_pretrained`` directory the weights come from (``None`` for an official
        checkpoint file or a model built in memory)."""
        return self._source.directory if self._source is not None else None

    @property
    def asset_directory(self) -> Path | None:
        """Where files that travel with the weights are looked for (``tokenizer.json``, a
        ``mert/`` folder): the model directory, or the folder holding an official checkpoint."""
        if self._source is None:
            return None
        if self._source.directory is not None:
            return self._source.directory
        origin = Path(self._source.origin)  # the official checkpoint file
        return origin.parent if origin.is_file() else None

    @property
    def device(self) -> torch.device:
        """The device the model's towers (including lazily built ones) live on."""
        return self._anchor.device

    @property
    def dtype(self) -> torch.dtype:
        """The floating-point dtype of the towers (float32 unless moved with ``.to(dtype=...)``)."""
        return self._anchor.dtype

    # ----------------------------------------------------------------------------- tensors
    def text_hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """input_ids (B, L) int, attention_mask (B, L) -> last hidden state (B, L, H)."""
        self.require("text")
        return self.text_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def symbolic_hidden_states(self, patches: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """patches (B, L, 64) int, attention_mask (B, L) -> last hidden state (B, L, H)."""
        self.require("symbolic")
        return self.symbolic_model(patches, attention_mask)

    def audio_hidden_states(self, rows: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """rows (B, L, feature_dim) float, attention_mask (B, L) -> last hidden state (B, L, H)."""
        self.require("audio")
        rows = rows.to(self.dtype)
        return self.audio_model(inputs_embeds=rows, attention_mask=attention_mask).last_hidden_state

    def hidden_states(self, modality: str, inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        fn = {
            "text": self.text_hidden_states,
            "symbolic": self.symbolic_hidden_states,
            "audio": self.audio_hidden_states,
        }[modality]
        return fn(inputs, mask)

    def packed_hidden_states(self, modality: str, inputs: torch.Tensor, packing: Packing) -> torch.Tensor:
        """Segments concatenated without padding, (T,) ids / (T, 64) patches / (T, F) rows laid
        out as ``packing`` says -> last hidden states (T, H)
        (:mod:`clamp3.towers.packed`: equals :meth:`hidden_states` on the padded batch)."""
        self.require(modality)
        return packed_forward(getattr(self, f"{modality}_model"), inputs, packing)

    def packed_features(self, modality: str, inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The (B, D) of :meth:`get_features` for the same padded batch, computed on its real
        tokens only: padding never enters a matrix product. Differentiable (training uses it);
        equal to the padded forward to float rounding."""
        flat, packing, order = unpad(inputs, mask)
        hidden = self.packed_hidden_states(modality, flat, packing)
        features = self.project(modality, segment_means(hidden, packing))
        return features[torch.argsort(order)]

    def project(self, modality: str, pooled: torch.Tensor) -> torch.Tensor:
        """Apply the modality's projection to pooled (B, H) features -> (B, D)."""
        self.require(modality)
        proj = getattr(self, f"{modality}_proj")
        weight = getattr(proj, "weight", None)
        return proj(pooled.to(weight.dtype) if weight is not None else pooled)

    def get_features(self, modality: str, inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Masked-mean pooled and projected features (B, D), not normalised (official)."""
        return self.project(modality, masked_mean(self.hidden_states(modality, inputs, mask), mask))

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.get_features("text", input_ids, attention_mask)

    def get_symbolic_features(self, patches: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.get_features("symbolic", patches, attention_mask)

    def get_audio_features(self, rows: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.get_features("audio", rows, attention_mask)

    def forward(
        self,
        text_ids: torch.Tensor,
        text_mask: torch.Tensor,
        music: torch.Tensor,
        music_mask: torch.Tensor,
        modality: str,
    ) -> Clamp3Output:
        """A contrastive pair batch: text and ``modality`` ('symbolic' or 'audio') features."""
        return Clamp3Output(
            self.get_text_features(text_ids, text_mask),
            self.get_features(modality, music, music_mask),
        )

    # ----------------------------------------------------------------------------- items
    def embed_text_ids(
        self, batch: Sequence[Sequence[int]], pooled: bool = True, batch_size: int = 32
    ) -> list[np.ndarray]:
        """Token-id lists (with ``<s>``...``</s>``) -> (D,) each, or (n, H) when not pooled."""
        vocab = self.config.tower("text").vocab_size
        return embed_items(self, "text", [prepare_text(ids, vocab) for ids in batch], pooled, batch_size)

    def embed_patches(
        self, batch: Sequence[np.ndarray], pooled: bool = True, batch_size: int = 32
    ) -> list[np.ndarray]:
        """Patch arrays (n, 64) with BOS/EOS patches -> (D,) each, or (n, H) when not pooled."""
        from clamp3.preprocess.patches import PATCH_SIZE

        self.config.tower("symbolic")  # a clear error when the model has no symbolic tower
        return embed_items(
            self, "symbolic", [prepare_patches(p, PATCH_SIZE) for p in batch], pooled, batch_size
        )

    def embed_audio_features(
        self, batch: Sequence[np.ndarray], pooled: bool = True, batch_size: int = 32
    ) -> list[np.ndarray]:
        """Feature rows (n_windows, F) -> (D,) each, or (n_windows + 2, H) when not pooled.

        The two zero rows (BOS/EOS) are added here, as the official extractor does.
        """
        dim = self.config.tower("audio").feature_dim
        return embed_items(self, "audio", [prepare_audio(f, dim) for f in batch], pooled, batch_size)

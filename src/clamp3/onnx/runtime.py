"""``OnnxModel``: an exported directory run with ONNX Runtime, torch-free for text.

The item-level contract of :class:`clamp3.model.Clamp3Model` (``embed_text_ids``,
``embed_patches``, ``embed_audio_features``; texts and files go through
:class:`clamp3.pipeline.Clamp3Pipeline`, which takes this model as it takes the torch one:
``Clamp3Pipeline.from_pretrained(export_dir)``), with the official segmentation and
length-weighted pooling of :mod:`clamp3.segments` (the very functions the torch path uses), so
an fp32 export gives torch's vectors within 1e-4. The tokenizer is ``tokenizer.json`` through the
``tokenizers`` package; neither torch nor transformers is imported for text, patches or stored
audio features (only decoding audio files needs the torch front-end).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from clamp3.batching import check_batch_size
from clamp3.config import Clamp3Config
from clamp3.inputs import add_boundary_rows, check_feature_rows, check_patch_ids, check_token_ids
from clamp3.model_identity import ModelIdentity
from clamp3.onnx.layout import Manifest, read_manifest
from clamp3.onnx.session import TowerSession
from clamp3.segments import embed_segmented
from clamp3.utils.errors import CheckpointError


def text_array(ids: Sequence[int], vocab_size: int | None = None) -> np.ndarray:
    """A token-id list (with ``<s>`` ... ``</s>``) -> (n,) int64 (as the torch path checks it)."""
    return check_token_ids(ids, vocab_size)


def patch_array(patches: np.ndarray, patch_size: int = 64) -> np.ndarray:
    """(n, patch_size) ids in [0, 128) -> int64."""
    return check_patch_ids(patches, patch_size)


def audio_array(features: np.ndarray, feature_dim: int = 768) -> np.ndarray:
    """Rows (n, F) or the official (1, n, F) -> (n + 2, F) float32 with the official zero
    BOS/EOS rows; a wrong shape or a non-finite value is an ``InputError``."""
    return add_boundary_rows(check_feature_rows(features, feature_dim, "<audio features>"))


def pad_batch(pieces: list[np.ndarray], pad_value: int | float) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad (l_i, ...) arrays to the longest -> (B, L, ...) and a (B, L) bool mask."""
    longest = max(len(p) for p in pieces)
    batch = np.full((len(pieces), longest, *pieces[0].shape[1:]), pad_value, dtype=pieces[0].dtype)
    mask = np.zeros((len(pieces), longest), dtype=bool)
    for i, piece in enumerate(pieces):
        batch[i, : len(piece)] = piece
        mask[i, : len(piece)] = True
    return batch, mask


class OnnxModel:
    """An ``export-onnx`` directory. Sessions open on first use of a tower; every file is
    checked against the manifest when the directory is opened (``CheckpointError`` naming it).
    ``one_shot``: the process runs one query and ends, so sessions skip weight prepacking
    (:class:`clamp3.onnx.session.TowerSession`)."""

    def __init__(
        self,
        directory: Path,
        manifest: Manifest,
        device: str | None = None,
        threads: int | None = None,
        one_shot: bool = False,
    ):
        self.directory = directory
        self.manifest = manifest
        self.config = Clamp3Config.load(directory / "config.json")
        self.device = device or "cpu"
        self.threads = threads
        self.one_shot = one_shot
        self._sessions: dict[str, TowerSession] = {}

    @classmethod
    def from_pretrained(
        cls,
        directory: str | os.PathLike,
        *,
        device: str | None = None,
        threads: int | None = None,
        one_shot: bool = False,
    ) -> OnnxModel:
        root = Path(directory)
        return cls(root, read_manifest(root), device=device, threads=threads, one_shot=one_shot)

    # ------------------------------------------------------------------ identity, raw inputs
    @property
    def precision(self) -> str:
        return self.manifest.precision

    @property
    def source_directory(self) -> Path:
        return self.directory

    @property
    def modalities(self) -> tuple[str, ...]:
        """The exported towers (a subset of ``config.modalities``)."""
        return tuple(m for m in self.config.modalities if m in self.manifest.towers)  # not "mert"

    def identity(self) -> ModelIdentity:
        """This directory's absolute path, and the fingerprint of the model it was exported
        from: its vectors live in that model's space (fp32 equal within 1e-4; int8 and fp16
        within the cosine checked at export), so indexes of the source model match it."""
        return ModelIdentity(str(self.directory.resolve()), self.manifest.fingerprint)

    @property
    def asset_directory(self) -> Path:
        """Where the tokenizer (and the audio front-end, ``mert.onnx``) are: the export."""
        return self.directory

    @property
    def weight_source(self) -> None:
        return None  # no torch weights: the identity comes from the manifest (:meth:`identity`)

    def to(self, device: str | None = None) -> OnnxModel:
        """Sessions already open stay where they are; towers opened later use ``device``."""
        self.device = None if device is None else str(device)
        return self

    def load_audio_frontend(self):
        """The exported MERT front-end (``mert.onnx``) as a :class:`clamp3.audio.WindowFrontend`,
        or ``None`` when the export has none (the pipeline then loads the torch front-end)."""
        entry = self.manifest.towers.get("mert")
        if entry is None:
            return None
        from clamp3.onnx.mert import OnnxMertFrontend

        session = TowerSession(self.directory / entry.graph, "mert", self.device, self.threads)
        return OnnxMertFrontend(session, self.config.tower("audio").feature_dim)

    # ------------------------------------------------------------------ towers
    def has_tower(self, modality: str) -> bool:
        return modality in self._sessions

    def require(self, modality: str) -> TowerSession:
        if modality not in self._sessions:
            self.config.tower(modality)  # a clear error when the model has no such tower
            entry = self.manifest.towers.get(modality)
            if entry is None:
                raise CheckpointError(
                    f"{self.directory}: the {modality} tower was not exported (exported: "
                    f"{', '.join(self.manifest.towers)}); rerun export-onnx with --towers {modality}"
                )
            session = TowerSession(
                self.directory / entry.graph, modality, self.device, self.threads, prepack=not self.one_shot
            )
            hidden = self.config.tower(modality).encoder.hidden_size
            if session.output_dims() != (
                self.config.projection_dim if self.config.projection else hidden,
                hidden,
            ):
                raise CheckpointError(
                    f"{session.path}: output sizes {session.output_dims()} do not match config.json"
                )
            self._sessions[modality] = session
        return self._sessions[modality]

    def _pad_value(self, modality: str) -> int:
        return self.config.tower("text").pad_token_id if modality == "text" else 0

    def run_segments(
        self, modality: str, pieces: list[np.ndarray], pooled: bool = True, batch_size: int = 32
    ) -> list[np.ndarray]:
        """Each piece (one segment, length <= the segment length) -> its (D,) projected pooled
        vector, or its (l, H) last hidden state when not ``pooled``. Pieces run longest first in
        batches of ``batch_size``, padded to the batch's longest (padding is masked out)."""
        session = self.require(modality)
        order = sorted(range(len(pieces)), key=lambda i: -len(pieces[i]))
        results: list[np.ndarray | None] = [None] * len(pieces)
        for lo in range(0, len(order), batch_size):
            idx = order[lo : lo + batch_size]
            inputs, mask = pad_batch([pieces[i] for i in idx], self._pad_value(modality))
            embedding, hidden = session.run(inputs, mask, hidden=not pooled)
            for row, i in enumerate(idx):
                results[i] = embedding[row] if pooled else hidden[row, : len(pieces[i])]
        return results  # type: ignore[return-value]

    def embed_items(
        self, modality: str, items: list[np.ndarray], pooled: bool = True, batch_size: int = 32
    ) -> list[np.ndarray]:
        """Prepared items (n_i, ...) -> (D,) global vectors (length-weighted segment mean) or
        (n_i, H) unpooled, exactly as :func:`clamp3.embedding.embed_items`."""
        length = self.config.tower(modality).segment_length
        batch_size = check_batch_size(batch_size)
        return embed_segmented(
            items, length, pooled, lambda pieces: self.run_segments(modality, pieces, pooled, batch_size)
        )

    def embed_text_ids(
        self, batch: Sequence[Sequence[int]], pooled: bool = True, batch_size: int = 32
    ) -> list[np.ndarray]:
        vocab = self.config.tower("text").vocab_size
        return self.embed_items("text", [text_array(ids, vocab) for ids in batch], pooled, batch_size)

    def embed_patches(
        self, batch: Sequence[np.ndarray], pooled: bool = True, batch_size: int = 32
    ) -> list[np.ndarray]:
        from clamp3.preprocess.patches import PATCH_SIZE as size  # fixed by the patch format

        return self.embed_items("symbolic", [patch_array(p, size) for p in batch], pooled, batch_size)

    def embed_audio_features(
        self, batch: Sequence[np.ndarray], pooled: bool = True, batch_size: int = 32
    ) -> list[np.ndarray]:
        dim = self.config.tower("audio").feature_dim
        return self.embed_items("audio", [audio_array(f, dim) for f in batch], pooled, batch_size)

    def embed_prepared_items(
        self, modality: str, arrays: list[np.ndarray], pooled: bool, batch_size: int
    ) -> list[np.ndarray]:
        """Prepared data as :class:`clamp3.encode.Prepared` holds it (token ids, patches, or
        feature rows without the zero rows) -> vectors."""
        if modality == "text":
            return self.embed_text_ids(arrays, pooled, batch_size)
        if modality == "symbolic":
            return self.embed_patches(arrays, pooled, batch_size)
        return self.embed_audio_features(arrays, pooled, batch_size)

    def load_all(self) -> OnnxModel:
        """Open a session for every exported tower now (a server does this before it listens)."""
        for modality in self.modalities:
            self.require(modality)
        return self

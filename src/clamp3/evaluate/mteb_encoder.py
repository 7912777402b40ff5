"""CLaMP 3 as an encoder for ``mteb`` 2.x (its ``EncoderProtocol``), for text and audio inputs.

``mteb.evaluate(Clamp3MtebEncoder("saas"), mteb.get_tasks(tasks=["MusicCapsT2ARetrieval"]))``
runs CLaMP 3 on MTEB's music-text tasks. Batches come from mteb's data loaders: a text batch
has ``"text"`` (a list of strings); an audio batch has ``"audio"``, a list of
``{"array", "sampling_rate"}`` (mono or multi-channel, any rate). Audio is mixed down,
resampled to the model front-end's rate (24 kHz; our port of torchaudio's default resampler, as
the official extractor) and embedded through the front-end and the audio tower, exactly as a
file would be (:mod:`clamp3.evaluate.benchmarks.embedder` is the one seam to the model).
Vectors are the model's global vectors (D = 768 for the official models); similarity is the
cosine (:func:`clamp3.evaluate.metrics.cosine_similarity`, the one ``clamp3 eval`` uses).

Licences (``mteb_model_meta.license`` holds the stricter): the CLaMP 3 weights are MIT (model
card of ``sander-wood/clamp3``); the MERT-v1-95M audio front-end is CC-BY-NC-4.0, so audio
embeddings are for non-commercial use. mteb is optional: ``pip install clamp3[mteb]``.
Decoding mteb's Hugging Face audio data sets needs what ``datasets`` needs (``torchcodec``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clamp3.evaluate.benchmarks import embedder
from clamp3.utils.errors import InputError

if TYPE_CHECKING:
    from clamp3.model import Clamp3Model
    from clamp3.pipeline import Clamp3Pipeline

LICENSES = {"weights": "mit", "mert_frontend": "cc-by-nc-4.0"}
# Parameters of the official checkpoints (605 tensors, fp32; docs of the official implementation).
OFFICIAL_PARAMETERS = {"saas": 457_896_960, "c2": 457_896_960}
HUB_PREFIX = "sander-wood/clamp3-"  # mteb model names of the official models
REFERENCE = "https://huggingface.co/sander-wood/clamp3"
CITATION = """@inproceedings{wu2025clamp3,
  title = {CLaMP 3: Universal Music Information Retrieval Across Unaligned Modalities and Unseen Languages},
  author = {Wu, Shangda and Guo, Zhancheng and Yuan, Ruibin and Jiang, Junyan and Doh, Seungheon and Xia, Gus and Nam, Juhan and Li, Xiaobing and Yu, Feng and Sun, Maosong},
  booktitle = {Findings of the Association for Computational Linguistics: ACL 2025},
  year = {2025},
  url = {https://arxiv.org/abs/2502.10362},
}"""


def _languages() -> list[str]:
    # The text tower is XLM-R base: its 100 pre-training languages, as mteb lists them for XLM-R.
    try:
        from mteb.models.model_implementations.facebookai import XLMR_LANGUAGES
    except ImportError:  # a later mteb may move the list; English is certain
        return ["eng-Latn"]
    return list(XLMR_LANGUAGES)


def mono(array: Any) -> np.ndarray:
    """A waveform of any layout -> float32 (n,): 2-D input is averaged over its shorter axis
    (channels), as the official extractor mixes stereo down."""
    wave = np.asarray(array.numpy() if hasattr(array, "numpy") else array, dtype=np.float32)
    if wave.ndim == 2:
        wave = wave.mean(axis=int(np.argmin(wave.shape)))
    if wave.ndim != 1:
        raise InputError("<audio>", f"expected a mono or multi-channel waveform, got shape {wave.shape}")
    return wave


class Clamp3MtebEncoder:
    """mteb ``EncoderProtocol`` over a :class:`~clamp3.pipeline.Clamp3Pipeline` (module docstring).

    ``model_name``: a tag (``saas``, ``c2``, or mteb's ``sander-wood/clamp3-saas``), a converted
    directory or an official ``.pth``; ``weights`` (a path) overrides it; ``model`` may be passed
    instead (a loaded model or pipeline). ``batch_size`` is the number of segments per forward pass.
    """

    def __init__(
        self,
        model_name: str = "saas",
        revision: str | None = None,
        *,
        device: str | None = None,
        model: Clamp3Model | Clamp3Pipeline | None = None,
        weights: str | None = None,
        batch_size: int = 32,
        **kwargs: Any,
    ) -> None:
        # mteb's ModelMeta.load_model calls loader(meta.name, revision=..., **loader_kwargs): the
        # name is "sander-wood/clamp3-<tag>" for the official models, and a local model's meta
        # carries its path as ``weights``.
        tag = str(model_name).removeprefix(HUB_PREFIX)
        if model is None:
            from clamp3.model import Clamp3Model

            model = Clamp3Model.from_pretrained(weights or tag, device=device or "cpu")
        self.embedder = embedder.Embedder(model, batch_size)  # the one pipeline of this encoder
        self.model = self.embedder.model
        self.model_name = tag
        self.weights = weights
        self.revision = revision

    # ----------------------------------------------------------------------------- encoding
    def encode_texts(self, texts: Iterable[str]) -> np.ndarray:
        """float32 (N, D) global vectors of text strings (not normalised)."""
        results = self.embedder.texts(list(texts))
        for result in results:
            if isinstance(result, InputError):
                raise result
        return np.stack(results).astype(np.float32) if results else self._empty()

    def encode_audio(self, items: Iterable[Mapping[str, Any]]) -> np.ndarray:
        """float32 (N, D) of ``{"array", "sampling_rate"}`` items; audio under 1 s (after
        resampling) or silent is an ``InputError``, as for files."""
        from clamp3.audio.resample import resample

        frontend = self.embedder.audio_frontend
        features = []
        for n, item in enumerate(items):
            if "array" not in item or "sampling_rate" not in item:
                raise InputError(
                    f"<audio {n}>", f"expected keys 'array' and 'sampling_rate', got {sorted(item)}"
                )
            wave = resample(mono(item["array"]), int(item["sampling_rate"]), frontend.sample_rate)
            features.append(frontend.features_from_waveform(wave, name=f"<audio {n}>"))
        if not features:
            return self._empty()
        return self.embedder.audio_features(features)

    def _empty(self) -> np.ndarray:
        return np.zeros((0, self.embedder.dim), np.float32)

    def encode(
        self,
        inputs: Iterable[Mapping[str, Any]],
        *,
        task_metadata: Any,
        hf_split: str,
        hf_subset: str,
        prompt_type: Any = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """float32 (N, D), one row per input of mteb's data loader, in its order.

        CLaMP 3 has no prompts and no instructions: ``task_metadata``, ``prompt_type`` and the
        split names do not change a vector. A batch holding both text and audio (a fused
        query) is refused: CLaMP 3 embeds one modality per input.
        """
        blocks = []
        for batch in inputs:
            if "audio" in batch and "text" in batch:
                raise ValueError("CLaMP 3 embeds text or audio per input, not both (fused inputs)")
            if "audio" in batch:
                blocks.append(self.encode_audio(batch["audio"]))
            elif "text" in batch:
                blocks.append(self.encode_texts(batch["text"]))
            else:
                raise ValueError(f"a batch needs 'text' or 'audio'; it has {sorted(batch)}")
        return np.concatenate(blocks) if blocks else self._empty()

    # ----------------------------------------------------------------------------- scores
    def similarity(self, embeddings1: Any, embeddings2: Any):
        """Cosine similarities, float32 torch tensor (N1, N2)."""
        import torch

        from clamp3.evaluate.metrics import cosine_similarity

        sims = cosine_similarity(_numpy(embeddings1), _numpy(embeddings2))
        return torch.from_numpy(sims.astype(np.float32))

    def similarity_pairwise(self, embeddings1: Any, embeddings2: Any):
        """Cosine of each pair of rows, float32 torch tensor (N,)."""
        import torch

        from clamp3.evaluate.metrics import unit_rows

        a, b = unit_rows(_numpy(embeddings1)), unit_rows(_numpy(embeddings2))
        return torch.from_numpy(np.einsum("ij,ij->i", a, b).astype(np.float32))

    @property
    def mteb_model_meta(self):
        """mteb's ``ModelMeta`` of this model (768-d official models, cosine, XLM-R's languages)."""
        from mteb.models import ModelMeta

        tag = str(self.model_name)
        official = tag in OFFICIAL_PARAMETERS and self.weights is None
        local = str(Path(self.weights or tag).resolve())
        return ModelMeta(
            loader=Clamp3MtebEncoder,
            loader_kwargs={} if official else {"weights": local},
            name=f"{HUB_PREFIX}{tag}" if official else f"local/clamp3-{Path(local).name or 'model'}",
            revision=self.revision,
            release_date="2025-02-14",
            languages=_languages(),
            n_parameters=OFFICIAL_PARAMETERS.get(tag),
            memory_usage_mb=None,
            # Texts of any length: 128-token segments, their vectors averaged (the official extractor).
            max_tokens=float("inf"),
            embed_dim=int(self.model.config.projection_dim),
            # Stricter of the two: CLaMP 3 weights MIT, MERT-v1-95M front-end CC-BY-NC-4.0 (LICENSES).
            license=LICENSES["mert_frontend"],
            open_weights=True,
            public_training_code="https://github.com/sanderwood/clamp3",
            public_training_data="https://huggingface.co/datasets/sander-wood/m4-rag",
            framework=["PyTorch"],
            reference=REFERENCE,
            similarity_fn_name="cosine",
            use_instructions=False,
            training_datasets=set(),
            modalities=["audio", "text"],
            citation=CITATION,
        )


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.atleast_2d(np.asarray(x, dtype=np.float64))

"""The mteb 2.x encoder: mteb's protocol check, a retrieval task built here in memory (text
queries, audio corpus at 16 kHz, the tiny preset) run by ``mteb.evaluate``, and its metrics
against our own ranking of the same vectors."""

from __future__ import annotations

from pathlib import Path

import mteb  # the clamp3[mteb] extra, part of [all]
import numpy as np
import pytest
from datasets import Dataset  # mteb's own dependency
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.task_metadata import TaskMetadata
from mteb.models.models_protocols import EncoderProtocol

from clamp3.evaluate import metrics
from clamp3.evaluate.mteb_encoder import Clamp3MtebEncoder, mono

SR = 16_000
N = 6


def _clip(i: int) -> np.ndarray:
    t = np.arange(int(1.6 * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * 110 * 2 ** (i / 4) * t) * np.exp(-t * (1 + i % 3))).astype(np.float32)


TEXTS = [
    f"a {w} piece for {v}"
    for w, v in zip(
        ["calm", "fast", "dark", "bright", "sad", "joyful"],
        ["piano", "violin", "organ", "flute", "choir", "guitar"],
    )
]


class LocalT2A(AbsTaskRetrieval):
    metadata = TaskMetadata(
        name="Clamp3LocalT2ARetrieval",
        description="six captions -> six synthetic clips, built in a test",
        reference="https://example.org/clamp3-test",
        dataset={"path": "local/none", "revision": "0"},
        type="Any2AnyRetrieval",
        category="t2a",
        modalities=["audio", "text"],
        eval_splits=["test"],
        eval_langs=["eng-Latn"],
        main_score="mrr_at_10",
        date=("2025-01-01", "2025-01-02"),
        domains=["Music"],
        task_subtypes=[],
        license="cc-by-4.0",
        annotations_creators="derived",
        dialect=[],
        sample_creation="created",
        bibtex_citation="",
    )

    def load_data(self, **kwargs):
        # Plain {"array", "sampling_rate"} records (no datasets.Audio column, so no audio decoder is needed).
        corpus = Dataset.from_dict(
            {
                "id": [f"d{i}" for i in range(N)],
                "audio": [{"array": _clip(i).tolist(), "sampling_rate": SR} for i in range(N)],
            }
        )
        queries = Dataset.from_dict({"id": [f"q{i}" for i in range(N)], "text": TEXTS})
        self.dataset = {
            "default": {
                "test": {
                    "corpus": corpus,
                    "queries": queries,
                    "top_ranked": None,
                    "relevant_docs": {f"q{i}": {f"d{i}": 1} for i in range(N)},
                }
            }
        }
        self.data_loaded = True


@pytest.fixture(scope="module")
def encoder(tiny_model_dir):
    from clamp3 import Clamp3Model

    return Clamp3MtebEncoder(str(tiny_model_dir), model=Clamp3Model.from_pretrained(tiny_model_dir))


def test_encoder_passes_mteb_protocol_check_and_meta(encoder):
    assert isinstance(encoder, EncoderProtocol)
    meta = encoder.mteb_model_meta
    assert meta.embed_dim == 32 and meta.similarity_fn_name == "cosine" and "audio" in meta.modalities
    assert meta.license == "cc-by-nc-4.0" and "eng-Latn" in meta.languages
    assert Clamp3MtebEncoder.__init__.__kwdefaults__ is not None  # device is keyword-only, as the protocol
    # The meta rebuilds the encoder with the call ModelMeta.load_model makes (load_model itself
    # first insists on mteb's own [audio] extra, torchaudio, for any audio model).
    again = meta.loader(meta.name, revision=meta.revision, **meta.loader_kwargs)
    assert isinstance(again, Clamp3MtebEncoder)
    assert again.weights == str(Path(encoder.model_name).resolve())
    text = ["a calm piece for piano"]
    assert np.allclose(again.encode_texts(text), encoder.encode_texts(text), atol=1e-6)
    official = Clamp3MtebEncoder("sander-wood/clamp3-saas", model=encoder.model).mteb_model_meta
    assert official.name == "sander-wood/clamp3-saas" and official.loader_kwargs == {}
    assert official.n_parameters == 457_896_960  # the official checkpoint's count


def test_audio_is_resampled_to_the_frontend_rate_and_embedded_as_a_file_would_be(encoder, tmp_path):
    import soundfile as sf

    wave = _clip(2)
    sf.write(tmp_path / "clip.wav", wave, SR, subtype="FLOAT")
    from_file = encoder.embedder.pipeline.encode_files([str(tmp_path / "clip.wav")], normalize=False)
    from_array = encoder.encode_audio([{"array": wave, "sampling_rate": SR}])
    assert np.allclose(from_file, from_array, atol=1e-5)
    stereo = encoder.encode_audio([{"array": np.stack([wave, wave]), "sampling_rate": SR}])
    assert np.allclose(stereo, from_array, atol=1e-6)
    assert mono(np.stack([wave, wave], axis=1)).shape == wave.shape


def test_mteb_evaluate_runs_a_local_retrieval_task_and_equals_our_metrics(encoder, tmp_path):
    task = LocalT2A()
    result = mteb.evaluate(encoder, task, cache=None, show_progress_bar=False)
    scores = result.task_results[0].scores["test"][0]
    q = encoder.encode_texts(TEXTS)
    d = encoder.encode_audio([{"array": _clip(i), "sampling_rate": SR} for i in range(N)])
    greater, tied = metrics.rank_counts(metrics.cosine_similarity(q, d), np.arange(N))
    assert not tied.any()  # no ties: every tie-breaking rule agrees
    ours = metrics.metrics_from_counts(greater, tied, ks=(1, 5, 10))
    assert scores["mrr_at_10"] == pytest.approx(ours["mrr"], abs=1e-5)  # N <= 10: MRR@10 is the MRR
    assert scores["recall_at_1"] == pytest.approx(ours["hit@1"], abs=1e-5)
    assert scores["recall_at_5"] == pytest.approx(ours["hit@5"], abs=1e-5)
    sims = encoder.similarity(q, d)
    assert tuple(sims.shape) == (N, N)
    assert np.allclose(encoder.similarity_pairwise(q, d).numpy(), np.diag(sims.numpy()), atol=1e-6)


def test_fused_or_unknown_batches_are_refused(encoder):
    with pytest.raises(ValueError, match="not both"):
        encoder.encode(
            [{"text": ["x"], "audio": [{"array": _clip(0), "sampling_rate": SR}]}],
            task_metadata=None,
            hf_split="test",
            hf_subset="default",
        )
    with pytest.raises(ValueError, match="needs 'text' or 'audio'"):
        encoder.encode([{"image": [1]}], task_metadata=None, hf_split="test", hf_subset="default")

"""Checks with the real official weights and tokenizer (off by default: ``pytest -m weights``).

They need ``sander-wood/clamp3`` and ``FacebookAI/xlm-roberta-base`` in the Hugging Face cache
(or network access with ``-m "weights and network"``).
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.weights


@pytest.fixture(scope="module")
def saas():
    from clamp3 import Clamp3Pipeline

    return Clamp3Pipeline.from_pretrained("saas")


def test_real_tokenizer_matches_the_xlmr_convention(saas):
    ids = saas.tokenizer.encode("Hello world")
    assert ids[0] == 0 and ids[-1] == 2 and len(ids) > 2
    joined = saas.tokenizer.encode("first line</s>second line")
    assert 2 in joined[1:-1]  # the separator is one special token


def test_matching_descriptions_rank_their_scores_first(saas, parity_dir):
    scores = [
        parity_dir / "prep/abc_interleaved/bach_bwv66_6.abc",
        parity_dir / "prep/abc_interleaved/joplin_maple_leaf_rag.abc",
        parity_dir / "prep/abc_interleaved/oneills_0003_little_heathy_hill.abc",
    ]
    texts = [
        "A four-part Bach chorale harmonisation for choir.",
        "Scott Joplin's ragtime for solo piano, syncopated and lively.",
        "An Irish folk dance tune from O'Neill's collection.",
    ]
    music = saas.encode_files(scores)
    queries = saas.encode_texts(texts)
    similarity = queries @ music.T
    assert np.isfinite(similarity).all()
    assert (similarity.argmax(1) == np.arange(3)).sum() >= 2


def test_c2_loads_and_embeds_multilingual_text():
    from clamp3 import Clamp3Pipeline

    model = Clamp3Pipeline.from_pretrained("c2")
    vectors = model.encode_texts(
        ["ein fröhliches Volkslied", "une chanson populaire joyeuse", "a sad funeral march"]
    )
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]

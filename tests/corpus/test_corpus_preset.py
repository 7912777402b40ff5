"""The ``mini`` preset and the corpus tokenizer it is trained with."""

from __future__ import annotations

import json

import pytest
from test_corpus_texts import FACTS, FOLK

from clamp3.config import load_preset
from clamp3.corpus.assemble import make_record
from clamp3.corpus.texts import all_texts, corpus_texts, train_corpus_tokenizer
from clamp3.tokenizer import TOKENIZER_FILE, TextTokenizer


def test_mini_preset_is_small_and_consistent():
    cfg = load_preset("mini")
    assert cfg.modalities == ("text", "symbolic", "audio")
    assert cfg.text.tokenizer == "local" and 4000 <= cfg.text.vocab_size <= 8000
    assert cfg.text.encoder.max_positions == cfg.text.segment_length + 2  # XLM-R positions start at 2
    assert cfg.symbolic.encoder.max_positions >= cfg.symbolic.segment_length >= 128
    assert cfg.audio.frontend == "logmel" and cfg.audio.feature_dim == cfg.audio.encoder.hidden_size
    assert cfg.audio.encoder.max_positions >= cfg.audio.segment_length
    for tower in (cfg.text, cfg.symbolic, cfg.audio):
        assert 128 <= tower.encoder.hidden_size <= 256 and 2 <= tower.encoder.num_layers <= 4


def test_mini_model_and_frontend_build():
    from clamp3 import Clamp3Model
    from clamp3.audio import load_frontend

    cfg = load_preset("mini")
    model = Clamp3Model(cfg)
    assert sum(p.numel() for p in model.parameters()) < 8_000_000
    frontend = load_frontend(cfg.audio)
    assert frontend.feature_dim == cfg.audio.feature_dim


@pytest.fixture()
def corpus_dir(tmp_path):
    records = {
        "train": [make_record(f, all_texts(f), {"abc": "a.abc"}) for f in (FACTS, FOLK)],
        "test": [make_record({**FACTS, "id": "held-out", "title": "Zyxwvut Qqqq"}, all_texts(FACTS), {})],
    }
    for split, rows in records.items():
        (tmp_path / f"m4rag_{split}.jsonl").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
        )
    return tmp_path


def test_corpus_tokenizer_is_trained_on_the_training_texts_of_every_language(corpus_dir, tmp_path):
    texts = list(corpus_texts(corpus_dir))
    assert any("fis-Moll" in t for t in texts) and any("升F小调" in t for t in texts)
    assert not any("Zyxwvut" in t for t in texts)  # the test split stays unseen
    tokenizer = train_corpus_tokenizer(corpus_dir, tmp_path / "tok", vocab_size=400)
    assert (tmp_path / "tok" / TOKENIZER_FILE).is_file()
    loaded = TextTokenizer.from_file(tmp_path / "tok" / TOKENIZER_FILE)
    assert loaded.vocab_size == tokenizer.vocab_size <= 400
    ids = loaded.encode("Ein Choral in fis-Moll")
    assert ids[0] == 0 and ids[-1] == 2 and 3 not in ids[1:-1]  # <s> ... </s>, no <unk>
    assert loaded.decode(ids).strip() == "Ein Choral in fis-Moll"
    chinese = "升F小调"  # in the training texts (above), so no <unk>
    tokens = [loaded.decode([i]).strip() for i in loaded.encode(chinese)[1:-1]]
    assert {"升", "F", "小", "调"} <= set(tokens)  # each character a piece: the key is not inside a phrase
    assert "".join(loaded.decode(loaded.encode(chinese)).split()) == chinese


def test_corpus_tokenizer_needs_texts(tmp_path):
    with pytest.raises(ValueError, match="build the corpus first"):
        train_corpus_tokenizer(tmp_path, tmp_path / "tok")


def test_canonical_vocab_does_not_depend_on_the_trainers_iteration_order():
    """Two trainer runs differ in the order of equal-score pieces and in which coverage
    character gets which step of the final 1e-4 staircase; the canonical form is the same."""
    import random

    from clamp3.tokenizer import COVERAGE_STEP, SPECIAL_TOKENS, canonical_vocab

    special = [[token, 0.0] for token in SPECIAL_TOKENS]
    trained = [["▁the", -2.5], ["▁a", -3.0], ["▁of", -3.0], ["ing", -4.25]]
    chars = ["x", "q", "z", "ü", "民"]
    runs = []
    for seed in range(4):
        rng = random.Random(seed)
        order = chars[:]
        rng.shuffle(order)
        tail = [[c, -14.0 - i * COVERAGE_STEP] for i, c in enumerate(order)]
        body = [[p, s + (rng.choice([0.0, 1e-15, -1e-15]) if p == "ing" else 0.0)] for p, s in trained]
        rng.shuffle(body)
        runs.append(canonical_vocab(special + body + tail, len(SPECIAL_TOKENS)))
    assert all(run == runs[0] for run in runs)
    canonical = runs[0]
    assert canonical[: len(SPECIAL_TOKENS)] == special  # the special ids stay 0..4
    assert [p for p, _ in canonical[5:9]] == ["▁the", "▁a", "▁of", "ing"]  # score, then piece
    tail_scores = {score for _, score in canonical[9:]}
    assert [p for p, _ in canonical[9:]] == sorted(chars) and len(tail_scores) == 1


def test_corpus_tokenizer_training_is_reproducible(tmp_path, corpus_dir):
    train_corpus_tokenizer(corpus_dir, tmp_path / "a", vocab_size=400)
    train_corpus_tokenizer(corpus_dir, tmp_path / "b", vocab_size=400)
    assert (tmp_path / "a" / TOKENIZER_FILE).read_bytes() == (tmp_path / "b" / TOKENIZER_FILE).read_bytes()

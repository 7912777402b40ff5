"""The compact Unigram segmentation gives the ids of ``tokenizers``' own Unigram model.

Large vocabularies (XLM-R's 250k pieces) are segmented in Python over a dict to save the
hundreds of MB ``tokenizers``' trie costs; the rest of the pipeline (added tokens, normaliser,
Metaspace, ``<s>``/``</s>``) stays in ``tokenizers``. Each test compares against
``tokenizers`` loading the same file, on fuzzed texts.
"""

from __future__ import annotations

import json
import pickle
import random

import pytest

from clamp3.tokenizer import COMPACT_MIN_PIECES, TextTokenizer

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
SPACES = {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}  # XLM-R's second normaliser
ALPHABET = list("abcdefghijklmnopqrstuvwxyzäöüéß") + list("абвгдежзик") + list("民歌欢快的一首") + ["▁"]


def _xlmr_like(path, pieces: list[tuple[str, float]], normalizer: dict | None, prepend: str = "always"):
    """A ``tokenizer.json`` laid out as XLM-R's: specials 0-3, pieces, ``<mask>`` last (lstrip)."""
    vocab = [[token, 0.0] for token in SPECIALS] + [list(p) for p in pieces] + [["<mask>", 0.0]]
    mask = len(vocab) - 1
    added = [
        {"id": i, "content": t, "single_word": False, "lstrip": t == "<mask>", "rstrip": False,
         "normalized": False, "special": True}
        for i, t in list(enumerate(SPECIALS)) + [(mask, "<mask>")]
    ]
    data = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": prepend, "split": True},
        "post_processor": {
            "type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 0],
            "trim_offsets": True, "add_prefix_space": True,
        },
        "decoder": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": prepend, "split": True},
        "model": {"type": "Unigram", "unk_id": 3, "vocab": vocab, "byte_fallback": False},
    }
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def _pieces(rng: random.Random, n: int, coarse: bool) -> list[tuple[str, float]]:
    """``n`` distinct pieces, most grown from shorter ones; ``coarse`` scores (multiples of 0.5,
    exact in binary) make many paths tie, which tests the order of comparisons."""
    pieces: dict[str, float] = {}
    grown: list[str] = []
    letters = [c for c in ALPHABET if rng.random() < 0.8]  # some characters have no piece: <unk>
    while len(pieces) < n:
        stem = rng.choice(grown) if grown and rng.random() < 0.7 else ""
        piece = (stem + rng.choice(letters))[:8]
        if piece not in pieces:
            pieces[piece] = -rng.randint(1, 24) / 2 if coarse else -rng.uniform(1.0, 12.0)
            grown.append(piece)
    return list(pieces.items())


def _texts(rng: random.Random, pieces: list[tuple[str, float]], count: int) -> list[str]:
    extra = list("  \t\n") + ["<s>", "</s>", "<mask>", " <mask>", "<unk>", "😀", "ｽﾅｯﾌﾟ", "ﬁ", "e\u0301", "Ⅻ"]
    words = [p.replace("▁", " ") for p, _ in pieces] or ALPHABET
    out = ["", " ", "a", "a melancholy waltz <mask> for piano", "  double  spaces  ", "😀😀"]
    for _ in range(count):
        pool = words if rng.random() < 0.5 else ALPHABET + extra
        parts = [rng.choice(pool) for _ in range(rng.randint(1, 14))]
        out.append("".join(parts))
    return out


@pytest.mark.parametrize(
    "normalizer, prepend, coarse",
    [
        ({"type": "NFKC"}, "always", False),
        ({"type": "Sequence", "normalizers": [{"type": "NFKC"}, SPACES]}, "always", True),
        (None, "first", True),
        ({"type": "Lowercase"}, "never", False),
    ],
)
def test_same_ids_as_tokenizers_on_fuzzed_texts(tmp_path, normalizer, prepend, coarse):
    rng = random.Random(7)
    pieces = _pieces(rng, 1500, coarse)
    path = _xlmr_like(tmp_path / "tokenizer.json", pieces, normalizer, prepend)
    reference = TextTokenizer.from_file(path, compact=False)
    compact = TextTokenizer.from_file(path, compact=True)
    assert reference.compact is None and compact.compact is not None
    texts = _texts(rng, pieces, 1500)
    expected = [reference.encode(t) for t in texts]
    assert [compact.encode(t) for t in texts] == expected
    assert compact.encode_batch(texts) == expected
    unknown = sum(ids.count(3) for ids in expected)
    assert unknown > 50  # the fuzz reaches the <unk> path (fused runs included)
    assert compact.vocab_size == reference.vocab_size
    for ids in expected[:200]:
        assert compact.decode(ids) == reference.decode(ids)


def test_ties_follow_tokenizers(tmp_path):
    """a + b scores what ab does: the longer piece from the earlier start wins, as in tokenizers."""
    pieces = [("▁a", -1.0), ("b", -1.0), ("▁ab", -2.0), ("▁", -1.0), ("a", -1.0), ("ab", -1.0)]
    pieces.append(("▁abb", -3.0))
    path = _xlmr_like(tmp_path / "tokenizer.json", pieces, None)
    reference = TextTokenizer.from_file(path, compact=False)
    compact = TextTokenizer.from_file(path, compact=True)
    for text in ["ab", "abb", "abab", "a b", "bab", "abbb"]:
        assert compact.encode(text) == reference.encode(text), text


def test_the_trained_demo_tokenizer_compacts_to_the_same_ids(tmp_path, tiny_tokenizer):
    path = tiny_tokenizer.save(tmp_path)
    reference = TextTokenizer.from_file(path, compact=False)
    compact = TextTokenizer.from_file(path, compact=True)
    texts = _texts(random.Random(3), [], 500) + ["ein fröhliches Volkslied in G-Dur", "一首欢快的民歌", "a  b"]
    assert [compact.encode(t) for t in texts] == [reference.encode(t) for t in texts]


def test_the_rule_chooses_by_vocabulary_size_and_save_keeps_the_file(tmp_path):
    rng = random.Random(1)
    small = _xlmr_like(tmp_path / "small.json", _pieces(rng, 300, False), {"type": "NFKC"})
    assert TextTokenizer.from_file(small).compact is None  # small vocabularies stay in tokenizers
    big = _xlmr_like(tmp_path / "big.json", _pieces(rng, COMPACT_MIN_PIECES, False), {"type": "NFKC"})
    loaded = TextTokenizer.from_file(big)
    assert loaded.compact is not None
    saved = loaded.save(tmp_path / "out")
    assert saved.read_bytes() == big.read_bytes()
    again = TextTokenizer.from_file(saved, compact=False)
    text = "ein fröhliches Volkslied für Geige"
    assert again.encode(text) == loaded.encode(text)
    unpickled = pickle.loads(pickle.dumps(loaded))  # e.g. a data-loader worker under spawn
    assert unpickled.compact is not None and unpickled.encode(text) == loaded.encode(text)


def test_a_vocabulary_that_cannot_be_compacted_is_named(tmp_path, tiny_tokenizer):
    path = tiny_tokenizer.save(tmp_path)
    data = json.loads(path.read_text(encoding="utf-8"))
    data["model"]["byte_fallback"] = True
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match="tokenizer.json"):
        TextTokenizer.from_file(path, compact=True)
    assert TextTokenizer.from_file(path).compact is None


@pytest.mark.parametrize("compact", [None, False])
def test_a_corrupt_file_is_one_setup_error_naming_it(tmp_path, compact):
    """A model asset, not an input: the error type stops a batch once (SETUP_ERRORS)."""
    from clamp3.encode import SETUP_ERRORS

    path = tmp_path / "tokenizer.json"
    path.write_text('{"model": {"type": "Unigram", "vocab": [["a", -1.0]', encoding="utf-8")
    with pytest.raises(SETUP_ERRORS) as caught:
        TextTokenizer.from_file(path, compact=compact)
    assert str(caught.value).startswith(f"{path}: not a usable tokenizer.json")


def test_the_saved_compact_form_loads_the_same_tokenizer(tmp_path, monkeypatch):
    import clamp3.tokenizer as tokenizer_module

    rng = random.Random(5)
    pieces = _pieces(rng, 2000, False)
    (tmp_path / "src").mkdir()
    path = _xlmr_like(tmp_path / "src" / "tokenizer.json", pieces, {"type": "NFKC"})
    saved = TextTokenizer.from_file(path, compact=True).save(tmp_path / "out")
    sidecar = saved.with_suffix(".compact.npz")
    assert sidecar.is_file()
    monkeypatch.setattr(tokenizer_module.json, "load", lambda *a, **k: pytest.fail("parsed the JSON"))
    fast = TextTokenizer.from_file(saved)  # from the sidecar: the 250k-entry JSON is not parsed
    assert fast.compact is not None
    monkeypatch.undo()
    reference = TextTokenizer.from_file(saved, compact=False)
    texts = _texts(rng, pieces, 500)
    assert [fast.encode(t) for t in texts] == [reference.encode(t) for t in texts]
    assert fast.vocab_size == reference.vocab_size
    assert fast.decode(fast.encode("ab c")) == reference.decode(reference.encode("ab c"))
    again = fast.save(tmp_path / "again")  # a tokenizer loaded from its sidecar saves both files
    assert again.read_bytes() == saved.read_bytes() and again.with_suffix(".compact.npz").is_file()


def test_a_stale_or_broken_compact_form_is_ignored(tmp_path, caplog):
    rng = random.Random(6)
    (tmp_path / "a").mkdir()
    first = _xlmr_like(tmp_path / "a" / "tokenizer.json", _pieces(rng, 1500, False), {"type": "NFKC"})
    saved = TextTokenizer.from_file(first, compact=True).save(tmp_path / "out")
    other = _pieces(random.Random(99), 1500, True)
    _xlmr_like(saved, other, {"type": "NFKC"})  # tokenizer.json replaced, the old sidecar left behind
    texts = _texts(rng, other, 300)
    reference = TextTokenizer.from_file(saved, compact=False)
    assert [TextTokenizer.from_file(saved).encode(t) for t in texts] == [reference.encode(t) for t in texts]
    sidecar = saved.with_suffix(".compact.npz")
    TextTokenizer.from_file(saved, compact=True).save(saved.parent)  # a fresh sidecar, then broken:
    whole = sidecar.read_bytes()
    for broken in (b"not a zip file", whole[: len(whole) // 2]):  # garbage; a truncated zip
        sidecar.write_bytes(broken)
        caplog.clear()
        with caplog.at_level("WARNING"):
            loaded = TextTokenizer.from_file(saved, compact=True)
        assert [loaded.encode(t) for t in texts] == [reference.encode(t) for t in texts]
        assert "compact.npz: unreadable" in caplog.text


def test_repeated_and_nul_pieces_follow_tokenizers(tmp_path):
    """A piece listed twice takes its last id, as in tokenizers; a NUL inside a piece takes the
    sort outside numpy (whose strings drop trailing NULs) and gets no sidecar."""
    rng = random.Random(11)
    pieces = _pieces(rng, 800, False)
    pieces += [pieces[10], pieces[20], ("▁a\x00", -2.0), ("b\x00\x00", -3.0)]
    path = _xlmr_like(tmp_path / "tokenizer.json", pieces, None)
    reference = TextTokenizer.from_file(path, compact=False)
    compact = TextTokenizer.from_file(path, compact=True)
    texts = _texts(rng, pieces, 400) + [" a\x00b", "b\x00\x00a", pieces[10][0].replace("▁", " ")]
    assert [compact.encode(t) for t in texts] == [reference.encode(t) for t in texts]
    first = 4 + 10  # the earlier id of the repeated piece still decodes to it
    assert compact.decode([first]) == reference.decode([first])
    saved = compact.save(tmp_path / "out")
    assert not saved.with_suffix(".compact.npz").exists()


def test_a_first_format_sidecar_still_loads(tmp_path, monkeypatch):
    """Sidecars of the first format held the pieces by id; they are sorted at load."""
    import numpy as np

    from clamp3.utils.io import file_sha256

    rng = random.Random(12)
    pieces = _pieces(rng, 1200, True)
    path = _xlmr_like(tmp_path / "tokenizer.json", pieces, {"type": "NFKC"})
    data = json.loads(path.read_text(encoding="utf-8"))
    vocab = data["model"]["vocab"]
    rest = json.dumps(dict(data, model=dict(data["model"], vocab=[])), ensure_ascii=False)
    np.savez(
        path.with_suffix(".compact.npz"),
        sha256=np.array(file_sha256(path)),
        rest=np.array(rest),
        unk_id=np.array(3),
        pieces=np.frombuffer("\x00".join(p for p, _ in vocab).encode("utf-8"), np.uint8),
        scores=np.array([s for _, s in vocab], np.float64),
    )
    reference = TextTokenizer.from_file(path, compact=False)
    texts = _texts(rng, pieces, 300)
    import clamp3.tokenizer as tokenizer_module

    monkeypatch.setattr(tokenizer_module.json, "load", lambda *a, **k: pytest.fail("parsed the JSON"))
    loaded = TextTokenizer.from_file(path, compact=True)
    monkeypatch.undo()
    assert [loaded.encode(t) for t in texts] == [reference.encode(t) for t in texts]

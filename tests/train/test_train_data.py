"""M4-RAG records, augmentations, crops, collation and the seeded batch order."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch

from clamp3.inputs import SEPARATOR
from clamp3.train.augment import crop_start, eval_text, remove_instrument_info, text_dropout
from clamp3.train.data import BatchPlan, EvalBatches, pad_stack
from clamp3.train.records import load_records, split_indices
from clamp3.utils.errors import InputError

RECORD = {
    "id": "r1",
    "filepaths": ["a.abc"],
    "language": "en",
    "title": "Title line",
    "tags": ["folk", "dance"],
    "analysis": "First analysis line\nSecond analysis line",
    "year": 1901,
    "translations": {"language": "de", "analysis": "Erste Zeile\nZweite Zeile"},
}


def _write(tmp_path, records, name="data.jsonl"):
    (tmp_path / "a.abc").write_text("X:1\nK:C\nCDEF|\n")
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_load_records_reads_valid_records(tmp_path):
    path = _write(tmp_path, [RECORD, "", {**RECORD, "id": 7}])
    records = load_records(path)
    assert [r["id"] for r in records] == ["r1", 7]


@pytest.mark.parametrize(
    "bad, reason",
    [
        ("{not json", "not valid JSON"),
        ({**RECORD, "id": ""}, "'id'"),
        ({**RECORD, "filepaths": []}, "'filepaths'"),
        ({**RECORD, "filepaths": ["a.wav"]}, "not a prepared music file .*`clamp3 extract-audio`"),
        ({**RECORD, "filepaths": ["a.pdf"]}, r"'a.pdf' is not a prepared music file \(.abc/.mtf/.npy\)$"),
        ({**RECORD, "filepaths": ["missing.abc"]}, "does not exist"),
        ({**RECORD, "tags": ["ok", 3]}, "field 'tags'"),
        ({**RECORD, "translations": {"analysis": 5}}, "translations"),
        ({"id": "x", "filepaths": ["a.abc"], "language": "en"}, "no text"),
        ([1, 2], "JSON object"),
    ],
)
def test_load_records_names_line_and_reason(tmp_path, bad, reason):
    path = _write(tmp_path, [RECORD, RECORD, bad])
    with pytest.raises(InputError, match=reason) as info:
        load_records(path)
    assert info.value.path == f"{path}:3"


def test_split_is_deterministic_and_disjoint():
    train, held = split_indices(200, 0.05, seed=3)
    assert len(held) == 10 and not set(train) & set(held) and len(train) + len(held) == 200
    assert split_indices(200, 0.05, seed=3) == (train, held)
    assert split_indices(200, 0.05, seed=4)[1] != held
    assert split_indices(5, 0.0, seed=3) == ([0, 1, 2, 3, 4], [])
    assert len(split_indices(50, 0.01, seed=3)[1]) == 1
    assert len(split_indices(50, 0.01, seed=3, minimum=2)[1]) == 2
    assert len(split_indices(2, 0.01, seed=3, minimum=2)[1]) == 1  # one stays in training


def test_a_contrastive_split_holds_out_two_records_at_least(tmp_path):
    """One held-out pair is ranked first at loss 0 at every validation: no checkpoint could beat
    the first, and the "best" model would be the first one validated."""
    from clamp3.train.data import load_pair_split

    path = _write(tmp_path, [{**RECORD, "id": f"r{i}"} for i in range(50)])  # 1 % of 50: one
    train, held, _, _ = load_pair_split(str(path), None, 0.01, seed=0)
    assert len(held) == 2 and len(train) == 48


def test_text_dropout_is_the_official_shape_and_deterministic():
    outputs = [text_dropout(RECORD, np.random.default_rng(s)) for s in range(400)]
    assert outputs[:20] == [text_dropout(RECORD, np.random.default_rng(s)) for s in range(20)]
    own = {"Title line", "folk", "dance", "First analysis line", "Second analysis line"}
    translated = {"Erste Zeile", "Zweite Zeile"}
    from_translations = 0
    for text in outputs:
        lines = set(text.split(SEPARATOR))
        assert lines and (lines <= own or lines <= translated)  # never mixed, never empty
        from_translations += lines <= translated
    assert 0.4 < from_translations / len(outputs) < 0.6  # translations chosen with p 1/2
    # Each own line kept with p 1/2 (when at least one survives).
    kept = Counter(line for t in outputs for line in t.split(SEPARATOR))
    assert 0.4 < kept["folk"] / (len(outputs) - from_translations) < 0.7
    assert eval_text(RECORD) == RECORD["analysis"]


def test_instrument_removal_abc_and_mtf():
    abc = 'X:1\nV:1 treble nm="Violin" snm="Vln."\nV:2 bass snm="Vc."\n[V:1]abc|[V:2]C,D,|\n'
    assert remove_instrument_info(abc) == "X:1\nV:1 treble\nV:2 bass\n[V:1]abc|[V:2]C,D,|\n"
    mtf = "ticks_per_beat 480\nprogram_change 0 1 40\nnote_on 0 1 60 90"
    assert remove_instrument_info(mtf) == "ticks_per_beat 480\nprogram_change 0 1 0\nnote_on 0 1 60 90"


def test_crops_are_head_tail_or_middle():
    assert crop_start(10, 16, np.random.default_rng(0)) == 0
    assert crop_start(100, 16, None) == 0  # evaluation: the head
    starts = [crop_start(100, 16, np.random.default_rng(s)) for s in range(3000)]
    heads, tails = starts.count(0), starts.count(84)
    middles = [s for s in starts if 0 < s < 84]
    assert all(0 <= s <= 84 for s in starts)
    for share in (heads, tails, len(middles)):
        assert abs(share / 3000 - 1 / 3) < 0.04
    assert min(middles) == 1 and max(middles) >= 80


def test_pad_stack_pads_dynamically():
    batch, mask = pad_stack([torch.tensor([5, 6]), torch.tensor([7, 8, 9])], pad_value=1)
    assert batch.tolist() == [[5, 6, 1], [7, 8, 9]]
    assert mask.tolist() == [[1, 1, 0], [1, 1, 1]]


def test_sharded_plan_covers_the_same_global_batches():
    single = BatchPlan(n_items=50, batch_size=8, seed=1, salt=2)
    shards = [BatchPlan(50, 8, 1, 2, rank=r, world_size=2) for r in range(2)]
    assert single.batches_per_epoch == 6
    for k in (0, 5, 6, 13):  # inside epoch 0, its last batch, the next epochs
        whole = [i for i, _ in single.local_items(k)]
        parts = [i for plan in shards for i, _ in plan.local_items(k)]
        assert parts == whole and len(set(whole)) == 8
        # An item's augmentation generator depends only on its global position.
        draws = [g.random() for _, g in single.local_items(k)]
        assert draws == [g.random() for plan in shards for _, g in plan.local_items(k)]
    epoch0 = [i for k in range(6) for i, _ in single.local_items(k)]
    assert len(set(epoch0)) == 48  # no repeats within an epoch; 2 dropped
    assert [i for i, _ in single.local_items(6)] != [i for i, _ in single.local_items(0)]


class _Positions:
    """A stand-in item source: item p is p, a batch is the list of its items."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def item(self, position: int, rng: np.random.Generator) -> int:
        return position

    def collate(self, items: list[int]) -> list[int]:
        return items


@pytest.mark.parametrize(
    "n, shares",
    [
        # 3 items in batches of 2 over 2 ranks: the last batch has 1 item (rank 1's), rank 0
        # gets it as a placeholder with 0 real rows.
        (3, [[([0], 1), ([1], 1)], [([2], 0), ([2], 1)]]),
        # Fewer items than ranks.
        (1, [[([0], 0), ([0], 1)]]),
    ],
)
def test_evaluation_keeps_every_item_and_pads_empty_shares(n, shares):
    ranks = [EvalBatches(_Positions(n), batch_size=2, seed=0, rank=r, world_size=2) for r in range(2)]
    assert [len(b) for b in ranks] == [len(shares)] * 2
    assert [[ranks[r][i] for r in range(2)] for i in range(len(shares))] == shares
    assert sum(ranks[0].global_size(i) for i in range(len(shares))) == n


def test_an_item_draws_its_text_before_its_music(tmp_path, tiny_tokenizer):
    # The official __getitem__ order: text dropout and its crop first, then the file.
    from clamp3.config import load_preset
    from clamp3.train.config import ContrastiveConfig
    from clamp3.train.data import PairSource
    from clamp3.train.toy import write_toy_pairs

    jsonl = write_toy_pairs(tmp_path, n=2, feature_dim=32)
    config = load_preset("tiny")
    source = PairSource(
        load_records(jsonl), tmp_path, "symbolic", tiny_tokenizer, config, ContrastiveConfig(), True
    )
    for seed in range(20):
        text, _ = source.item(0, np.random.default_rng(seed))
        assert torch.equal(text, source._text_ids(source.records[0], np.random.default_rng(seed)))


def test_array_cache_is_bounded_in_bytes_and_least_recently_used():
    from clamp3.train.data import ArrayCache

    cache = ArrayCache(max_bytes=300)
    built = []

    def build(key):
        built.append(key)
        return np.full(100, key, dtype=np.uint8)

    for key in (1, 2, 3, 1, 4):  # 1 is used again before 4 arrives, so 2 is the one evicted
        assert cache.get(key, lambda k=key: build(k))[0] == key
    assert built == [1, 2, 3, 4]
    cache.get(2, lambda: build(2))
    cache.get(1, lambda: build(1))
    assert built == [1, 2, 3, 4, 2]
    assert sum(a.nbytes for a in cache._items.values()) <= 300
    ArrayCache(0).get(5, lambda: build(5))  # a zero budget keeps nothing and still returns
    assert np.array_equal(ArrayCache(10).get(6, lambda: build(6)), np.full(100, 6))


def test_cached_patches_equal_a_fresh_patching(tmp_path, tiny_tokenizer, monkeypatch):
    # Two passes over every item (instrument removal on for about half) give the same int64
    # patches as a source that keeps nothing, and the second pass patches no file again.
    from clamp3.config import load_preset
    from clamp3.train import data
    from clamp3.train.config import ContrastiveConfig
    from clamp3.train.toy import write_toy_pairs

    jsonl = write_toy_pairs(tmp_path, n=4, feature_dim=32)
    records, config = load_records(jsonl), load_preset("tiny")
    settings = ContrastiveConfig(instrument_removal_p=0.5)
    cached = data.PairSource(records, tmp_path, "symbolic", tiny_tokenizer, config, settings, True)
    monkeypatch.setattr(data, "PATCH_CACHE_BYTES", 0)
    fresh = data.PairSource(records, tmp_path, "symbolic", tiny_tokenizer, config, settings, True)
    for _ in range(2):
        for i in range(len(cached)):
            for seed in range(6):
                _, a = cached.item(i, np.random.default_rng(seed))
                _, b = fresh.item(i, np.random.default_rng(seed))
                assert a.dtype == b.dtype == torch.int64 and torch.equal(a, b)
    calls = []
    monkeypatch.setattr(cached, "_file_patches", lambda *a: calls.append(a))
    for i in range(len(cached)):
        for seed in range(6):
            cached.item(i, np.random.default_rng(seed))
    assert calls == []


def test_head_truncation_keeps_the_head_of_long_training_items(tmp_path, tiny_tokenizer):
    # truncation="head": a training item longer than its segment starts at its first row, as in
    # evaluation; "random" (official) also draws tails and middle windows. Texts likewise.
    from clamp3.config import load_preset
    from clamp3.train.config import ContrastiveConfig, StageConfig
    from clamp3.train.data import PairSource, load_feature_rows
    from clamp3.train.toy import write_toy_pairs

    jsonl = write_toy_pairs(tmp_path, n=2, feature_dim=32)
    config = load_preset("tiny")
    length = config.tower("audio").segment_length
    rows = np.arange((length + 20) * 32, dtype=np.float32).reshape(-1, 32)
    records = load_records(jsonl)
    np.save(tmp_path / records[0]["filepaths"][1], rows)
    records[0]["analysis"] = " ".join(f"word{i}" for i in range(400))
    sources = {
        mode: PairSource(
            records, tmp_path, "audio", tiny_tokenizer, config, ContrastiveConfig(truncation=mode), True
        )
        for mode in ("head", "random")
    }
    framed = torch.from_numpy(load_feature_rows(tmp_path / records[0]["filepaths"][1], 32))
    assert len(framed) > length
    heads, starts = set(), set()
    for seed in range(12):
        text, music = sources["head"].item(0, np.random.default_rng(seed))
        assert torch.equal(music, framed[:length])
        full = tiny_tokenizer.encode(text_dropout(records[0], np.random.default_rng(seed)))
        assert text.tolist() == full[: config.tower("text").segment_length]
        heads.add(tuple(text.tolist()))
        _, music = sources["random"].item(0, np.random.default_rng(seed))
        starts.add(int(torch.nonzero(torch.all(framed == music[1], dim=1))[0]) - 1)
    assert len(heads) > 1  # text dropout still varies the text
    assert len(starts) > 1 and starts != {0}
    with pytest.raises(ValueError, match="truncation"):
        StageConfig("s", contrastive=ContrastiveConfig(truncation="tail")).validate()

"""Hard in-batch negatives: ``group_by`` draws whole batches from one group of records."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clamp3.train import config_from_dict, train
from clamp3.train.config import stage_from_dict
from clamp3.train.data import BatchPlan, group_order, record_groups
from clamp3.train.logger import read_log


def _groups(sizes: list[int]) -> np.ndarray:
    return np.concatenate([np.full(n, g) for g, n in enumerate(sizes)])


@pytest.mark.parametrize("sizes", [[8, 8, 8], [13, 5, 9, 1], [3, 3, 3], [20]])
def test_group_order_is_a_permutation_with_single_group_blocks(sizes):
    groups = _groups(sizes)
    rng = np.random.default_rng(0)
    order = group_order(rng.permutation(len(groups)), groups, 4, rng)
    assert sorted(order.tolist()) == list(range(len(groups)))
    blocks = [order[i : i + 4] for i in range(0, len(order) // 4 * 4, 4)]
    single = sum(len(set(groups[b])) == 1 for b in blocks)
    assert single == sum(n // 4 for n in sizes)  # every group's full blocks stay whole


def test_ungrouped_items_only_fill_mixed_batches():
    groups = np.array([0] * 8 + [-1] * 8)
    rng = np.random.default_rng(1)
    order = group_order(rng.permutation(16), groups, 4, rng)
    blocks = [set(groups[order[i : i + 4]]) for i in range(0, 16, 4)]
    assert sorted(map(sorted, blocks)) == [[-1], [-1], [0], [0]]


def test_plan_with_groups_is_seeded_and_changes_each_epoch():
    groups = tuple(_groups([10, 10, 12]).tolist())
    plan = BatchPlan(32, 4, seed=3, salt=7, groups=groups)
    again = BatchPlan(32, 4, seed=3, salt=7, groups=groups)
    assert np.array_equal(plan.epoch_order(0), again.epoch_order(0))
    assert not np.array_equal(plan.epoch_order(0), plan.epoch_order(1))
    items = [[i for i, _ in plan.local_items(k)] for k in range(plan.batches_per_epoch)]
    assert sum(len({groups[i] for i in batch}) == 1 for batch in items) == 2 + 2 + 3


def test_group_size_puts_several_single_group_blocks_in_each_batch():
    groups = tuple(_groups([4] * 8 + [6, 2]).tolist())  # 8 pieces x 4 keys, a group of 6, one of 2
    plan = BatchPlan(len(groups), 8, seed=5, salt=1, groups=groups, group_size=4)
    order = plan.epoch_order(0)
    assert sorted(order.tolist()) == list(range(len(groups)))
    blocks = [order[i : i + 4] for i in range(0, len(order), 4)]
    single = [len({groups[i] for i in block}) == 1 for block in blocks]
    assert sum(single) == 8 + 1  # every group's full block of 4 stays whole; tails are mixed
    batches = [[i for i, _ in plan.local_items(k)] for k in range(plan.batches_per_epoch)]
    assert all(len(b) == 8 for b in batches)
    assert sum(len({groups[i] for i in batch}) >= 2 for batch in batches) == len(batches)
    assert not np.array_equal(order, plan.epoch_order(1))


def test_group_size_needs_group_by_and_a_divisor_of_the_batch():
    for bad in ({"group_size": 4}, {"group_by": "facts.group", "group_size": 5}):
        with pytest.raises(ValueError, match="group_size"):
            stage_from_dict({"preset": "symbolic", "optim": {"batch_size": 32}, **bad})
    stage_from_dict({"preset": "symbolic", "group_by": "facts.group", "group_size": 4}).validate()


def test_record_groups_reads_dotted_keys_and_marks_missing():
    records = [{"facts": {"collection": "bach"}}, {"facts": {"collection": "essen"}}, {"facts": {}}, {}]
    assert record_groups(records, "facts.collection") == (0, 1, -1, -1)
    assert record_groups([{"c": ["a", 1]}, {"c": ["a", 1]}], "c") == (0, 0)
    with pytest.raises(ValueError, match="group_by 'facts.colection': no training record has this field"):
        record_groups(records, "facts.colection")


def test_group_by_belongs_to_contrastive_stages():
    with pytest.raises(ValueError, match="group_by"):
        stage_from_dict({"preset": "m3", "group_by": "facts.collection"}).validate()
    assert (
        stage_from_dict({"preset": "symbolic", "group_by": "facts.collection"}).group_by == "facts.collection"
    )


@pytest.mark.usefixtures("one_thread")
def test_a_grouped_stage_trains(toy, tmp_path):
    lines = (toy / "pairs.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    for i, record in enumerate(records):
        record["facts"] = {"collection": f"c{i % 2}"}
    (toy / "grouped.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    stage = {
        "preset": "audio",
        "group_by": "facts.collection",
        "optim": {"lr": 1e-3, "batch_size": 4, "max_steps": 6},
    }
    config = {
        "output_dir": str(tmp_path / "run"),
        "model": "tiny",
        "tokenizer": str(toy),
        "train_data": str(toy / "grouped.jsonl"),
        "eval_fraction": 0,
        "log_every": 1,
        "show_progress": False,
        "stages": [stage],
    }
    train(config_from_dict(config))
    losses = [r["loss"] for r in read_log(tmp_path / "run" / "log.jsonl", "train")]
    assert len(losses) == 6 and np.isfinite(losses).all()

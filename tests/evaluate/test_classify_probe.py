"""Linear probe: learns separable classes, stays at chance on random labels, reloads identically."""

from __future__ import annotations

import numpy as np
import pytest

from clamp3.evaluate.probe import LinearProbe
from clamp3.evaluate.probe_train import ProbeSettings, split_indices, train_probe

NAMES = ["blues", "choral", "jazz", "rock"]


def clusters(rng: np.random.Generator, n: int = 400, dim: int = 32, spread: float = 3.0):
    """Gaussian clusters, one per class, offset and scaled like raw (unnormalised) embeddings."""
    centres = rng.normal(size=(len(NAMES), dim)) * spread
    y = rng.integers(0, len(NAMES), n)
    x = centres[y] + rng.normal(size=(n, dim)) + 7.0
    return (x * 0.05).astype(np.float32), y


def test_separable_classes_are_learned(rng):
    x, y = clusters(rng)
    probe = train_probe(x, y, NAMES)
    val = probe.info["metrics"]["val"]
    assert val["accuracy"] >= 0.97
    assert val["macro_f1"] >= 0.97
    assert val["n"] == probe.info["data"]["n_val"] > 0
    assert np.asarray(val["confusion"]).sum() == val["n"]


def test_random_labels_stay_near_chance(rng):
    x, _ = clusters(rng, n=600)
    y = rng.integers(0, len(NAMES), len(x))
    probe = train_probe(x, y, NAMES)
    # chance is 0.25; 120 validation items give a standard error of about 0.04
    assert probe.info["metrics"]["val"]["accuracy"] < 0.4


def test_saved_probe_predicts_identically(rng, tmp_path):
    x, y = clusters(rng)
    probe = train_probe(x, y, NAMES, ProbeSettings(max_epochs=20))
    probe.save(tmp_path / "probe")
    loaded = LinearProbe.load(tmp_path / "probe")
    assert loaded.labels == NAMES and loaded.input_dim == x.shape[1] and not loaded.multi_label
    np.testing.assert_array_equal(loaded.logits(x), probe.logits(x))
    np.testing.assert_array_equal(loaded.predict(x), probe.predict(x))
    assert loaded.info["metrics"] == probe.info["metrics"]
    assert loaded.info["settings"]["max_epochs"] == 20


def test_probe_rejects_wrong_dimension(rng):
    x, y = clusters(rng, n=50)
    probe = train_probe(x, y, NAMES, ProbeSettings(max_epochs=2))
    with pytest.raises(ValueError, match=r"\(N, 32\)"):
        probe.predict(np.zeros((3, 16), dtype=np.float32))


def test_stratified_split_is_seeded_and_keeps_every_class(rng):
    y = np.array([0] * 50 + [1] * 10 + [2] * 2 + [3] * 1)
    train, val = split_indices(y, 0.2, seed=3)
    again_train, again_val = split_indices(y, 0.2, seed=3)
    np.testing.assert_array_equal(val, again_val)
    np.testing.assert_array_equal(train, again_train)
    assert sorted(np.concatenate([train, val])) == list(range(len(y)))
    assert np.bincount(y[val], minlength=4).tolist() == [10, 2, 1, 0]  # a singleton stays in training
    assert set(y[train]) == {0, 1, 2, 3}


@pytest.mark.parametrize("balance", ["weight", "sample"])
def test_balancing_helps_a_rare_class(rng, balance):
    """19:1 imbalance, overlapping classes: balancing recalls the rare class far better than none."""
    n_major, n_minor, dim = 570, 30, 8
    x = np.concatenate([rng.normal(0.0, 1.0, (n_major, dim)), rng.normal(0.6, 1.0, (n_minor, dim))])
    y = np.array([0] * n_major + [1] * n_minor)
    recall = {}
    for mode in (balance, "none"):
        settings = ProbeSettings(balance=mode, val_split=0, max_epochs=60)
        probe = train_probe(x.astype(np.float32), y, ["common", "rare"], settings)
        recall[mode] = probe.info["metrics"]["train"]["per_class"]["rare"]["recall"]
    assert recall[balance] > recall["none"] + 0.4


def test_multi_label_tagging(rng, tmp_path):
    n, dim, tags = 500, 24, ["calm", "dark", "fast", "loud", "vocal"]
    y = rng.random((n, len(tags))) < 0.3
    x = (y.astype(np.float64) @ rng.normal(size=(len(tags), dim)) * 2 + rng.normal(size=(n, dim))).astype(
        np.float32
    )
    probe = train_probe(x, y, tags, ProbeSettings(multi_label=True, tune_thresholds=True))
    val = probe.info["metrics"]["val"]
    assert val["micro_f1"] > 0.9 and val["macro_f1"] > 0.9 and val["mAP"] > 0.95
    assert probe.thresholds.shape == (len(tags),) and ((probe.thresholds > 0) & (probe.thresholds < 1)).all()
    predicted = probe.predict(x)
    assert predicted.dtype == bool and predicted.shape == y.shape
    probe.save(tmp_path / "tagger")
    loaded = LinearProbe.load(tmp_path / "tagger")
    assert loaded.multi_label
    np.testing.assert_array_equal(loaded.predict(x), predicted)
    np.testing.assert_array_equal(loaded.thresholds, probe.thresholds)


def test_multi_label_random_tags_have_chance_map(rng):
    n, dim = 500, 24
    x = rng.normal(size=(n, dim)).astype(np.float32)
    y = rng.random((n, 4)) < 0.3
    val = train_probe(x, y, list("abcd"), ProbeSettings(multi_label=True)).info["metrics"]["val"]
    assert val["mAP"] < 0.5  # chance AP equals the positive rate, about 0.3


def test_load_names_the_missing_file(tmp_path):
    from clamp3.utils.errors import InputError

    with pytest.raises(InputError, match="probe.json"):
        LinearProbe.load(tmp_path)


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"lr": -1.0}, "lr=-1.0"),
        ({"lr": 0.0}, "lr=0.0"),
        ({"weight_decay": -0.1}, "weight_decay=-0.1"),
        ({"patience": 0}, "patience=0"),
        ({"tune_thresholds": True}, "needs a multi-label probe"),
    ],
)
def test_settings_that_cannot_train_are_refused(settings, named):
    with pytest.raises(ValueError, match=named):
        ProbeSettings(**settings)


def test_a_probe_the_epoch_budget_cut_short_is_warned_about(rng, caplog):
    """A few items give one optimizer step per epoch: 200 epochs were 200 small steps, and the
    probe came out under-trained without a word."""
    import logging

    x, y = clusters(rng, n=24, spread=1.0)
    with caplog.at_level(logging.WARNING, "clamp3.evaluate.probe_train"):
        train_probe(x, y, NAMES, ProbeSettings(max_epochs=30, lr=1e-4))
        messages = [r.getMessage() for r in caplog.records]
        assert len(messages) == 1
        assert "still falling at the last of 30 epochs (30 optimizer steps)" in messages[0]
        caplog.clear()
        x, y = clusters(rng)
        train_probe(x, y, NAMES, ProbeSettings(lr=1e-2, patience=3))  # ended by early stopping
        assert not caplog.records

"""``clamp3 train`` / ``pretrain-m3`` / ``train-presets`` on the tiny preset."""

from __future__ import annotations

import json
import logging
import sys

import pytest
import torch

from clamp3.cli.main import build_parser, main
from clamp3.train.logger import read_log
from clamp3.train.toy import write_toy_pairs


@pytest.fixture()
def config_file(tmp_path, tiny_tokenizer):
    write_toy_pairs(tmp_path / "data", n=8, feature_dim=32)
    tiny_tokenizer.save(tmp_path / "data")
    path = tmp_path / "run.json"
    stage = {"preset": "audio", "optim": {"lr": 1e-3, "batch_size": 4, "epochs": 3, "warmup_steps": 0}}
    config = {
        "output_dir": "run",
        "model": "tiny",
        "tokenizer": "data",
        "train_data": "data/pairs.jsonl",
        "eval_fraction": 0,
        "log_every": 1,
        "show_progress": False,
        "stages": [stage],
    }
    path.write_text(json.dumps(config))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield path
    torch.set_num_threads(threads)


def test_train_stop_and_resume_from_the_command_line(config_file, capsys):
    assert main(["train", str(config_file), "--stop-after", "2"]) == 0
    assert "--resume" in capsys.readouterr().out
    assert main(["train", str(config_file), "--resume"]) == 0
    run = config_file.parent / "run"
    assert f"best model: {run / 'best'}" in capsys.readouterr().out
    assert [r["step"] for r in read_log(run / "log.jsonl", "train")] == [1, 2, 3, 4, 5, 6]
    assert (run / "best/config.json").is_file() and (run / "best/tokenizer.json").is_file()


def test_the_former_pretrain_m3_command_is_train(config_file, capsys):
    # `train` runs any config, its stages say the task; the old name remains as a hidden alias.
    assert main(["pretrain-m3", str(config_file), "--stop-after", "1"]) == 0
    assert "--resume" in capsys.readouterr().out
    assert "pretrain-m3" not in build_parser().format_help()


def test_presets_are_listed(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "symbolic -> audio-text-frozen -> audio -> symbolic-text-frozen" in out
    assert "m3" in out and "lr=5e-05 batch=1024" in out and "tiny     towers: text, symbolic, audio" in out
    assert main(["train-presets"]) == 0  # the former command: the training part only
    training = capsys.readouterr().out
    assert training and training in out and "towers:" not in training


def test_a_preset_is_shown_in_full(capsys):
    from clamp3.config import load_preset

    assert main(["presets", "tiny"]) == 0  # an architecture: what its config.json holds
    assert json.loads(capsys.readouterr().out) == {"architecture": load_preset("tiny").to_dict()}
    assert main(["presets", "symbolic"]) == 0  # a training stage
    stage = json.loads(capsys.readouterr().out)["stage"]
    assert stage["task"] == "contrastive" and stage["optim"]["lr"] == 5e-05
    assert main(["presets", "saas"]) == 0  # an architecture and a recipe
    saas = json.loads(capsys.readouterr().out)
    assert saas["architecture"]["name"] == "saas" and len(saas["recipe"]) == 4
    assert main(["presets", "mini-m3"]) == 0  # a recipe only: its stages in order
    assert [s["task"] for s in json.loads(capsys.readouterr().out)["recipe"]] == ["m3"]
    assert main(["presets", "nope"]) == 2
    assert "no preset or recipe named 'nope'" in capsys.readouterr().err


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_bad_data_is_reported_without_a_traceback_and_status_2(config_file, capsys):
    jsonl = config_file.parent / "data/pairs.jsonl"
    lines = jsonl.read_text().splitlines()
    lines[3] = lines[3].replace('"filepaths"', '"files"')
    jsonl.write_text("\n".join(lines) + "\n")
    assert main(["train", str(config_file)]) == 2
    assert "pairs.jsonl:4: record 'toy-0003': 'filepaths' must be" in _one_error_line(capsys)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"stages": [{"preset": "audio", "optim": {"lr": -1}}]}, "lr must be positive"),
        ({"seed": 1, "bogus": 2}, "unknown fields ['bogus']"),
        ({"bad_items": "ignore"}, "bad_items must be one of"),
    ],
)
def test_a_bad_config_exits_with_status_2(config_file, capsys, change, message):
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), **change}))
    assert main(["train", str(config_file)]) == 2
    assert message in _one_error_line(capsys)


@pytest.mark.parametrize(
    "setting, module, package",
    [
        ({"tensorboard": True}, "torch.utils.tensorboard", "tensorboard"),
        ({"wandb_project": "p"}, "wandb", "wandb"),
    ],
)
def test_a_missing_optional_logger_is_one_line_before_anything_is_written(
    config_file, capsys, monkeypatch, setting, module, package
):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), **setting}))
    assert main(["train", str(config_file)]) == 2
    assert f"pip install {package}" in _one_error_line(capsys)
    assert not (config_file.parent / "run").exists()


def test_stop_after_at_a_stage_boundary_stops_there(config_file, capsys):
    # Stage one: 8 items, batch 4, 3 epochs = 6 steps; --stop-after 6 must not take a step of
    # stage two (it ran 7 and said 6).
    data = json.loads(config_file.read_text())
    second = {**data["stages"][0], "name": "again"}
    config_file.write_text(json.dumps({**data, "stages": [data["stages"][0], second]}))
    assert main(["train", str(config_file), "--stop-after", "6"]) == 0
    assert "stopped after 6 steps" in capsys.readouterr().out
    run = config_file.parent / "run"
    assert [(r["stage"], r["step"]) for r in read_log(run / "log.jsonl", "train")] == [
        ("audio", s) for s in range(1, 7)
    ]
    assert (run / "stages/01-audio/done.json").is_file() and not (run / "stages/02-again").exists()
    assert main(["train", str(config_file), "--resume", "--stop-after", "6"]) == 0
    assert "best model:" in capsys.readouterr().out  # the second stage's 6 steps end the run
    assert len(read_log(run / "log.jsonl", "train")) == 12


def test_eval_results_and_best_models_reach_the_terminal(config_file, caplog):
    data = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**data, "eval_fraction": 0.25, "eval_every": 2}))
    with caplog.at_level(logging.INFO, logger="clamp3.train"):
        assert main(["train", str(config_file)]) == 0
    messages = [r.getMessage() for r in caplog.records]
    evals = [m for m in messages if ": validation accuracy" in m]
    assert len(evals) == 2 and all("loss" in m for m in evals)  # step 2 and the last, 3
    assert "best so far, saved to" in evals[0] and "stages/01-audio/best" in evals[0]
    assert any("audio step 1 (epoch" in m for m in messages)  # no progress bar: train lines


def test_one_validation_item_in_a_contrastive_stage_is_warned_about(config_file, tmp_path, caplog):
    data = json.loads(config_file.read_text())
    first = (tmp_path / "data" / "pairs.jsonl").read_text().splitlines()[0]
    (tmp_path / "data" / "one.jsonl").write_text(first + "\n")
    config_file.write_text(json.dumps({**data, "eval_data": "data/one.jsonl", "eval_every": 2}))
    with caplog.at_level(logging.INFO, logger="clamp3.train"):
        assert main(["train", str(config_file)]) == 0
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("one validation item" in m and "two items or more" in m for m in warned) == 1

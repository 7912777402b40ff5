"""``clamp3 train`` / ``pretrain-m3`` / ``train-presets`` on the tiny preset."""

from __future__ import annotations

import json

import pytest
import torch

from clamp3.cli.main import main
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


def test_the_wrong_command_for_the_task_says_which_to_use(config_file):
    with pytest.raises(SystemExit, match="clamp3 train"):
        main(["pretrain-m3", str(config_file)])


def test_presets_are_listed(capsys):
    assert main(["train-presets"]) == 0
    out = capsys.readouterr().out
    assert "symbolic -> audio-text-frozen -> audio -> symbolic-text-frozen" in out
    assert "m3" in out and "lr=5e-05 batch=1024" in out


def test_bad_data_is_reported_without_a_traceback(config_file):
    jsonl = config_file.parent / "data/pairs.jsonl"
    lines = jsonl.read_text().splitlines()
    lines[3] = lines[3].replace('"filepaths"', '"files"')
    jsonl.write_text("\n".join(lines) + "\n")
    with pytest.raises(SystemExit, match=r"pairs.jsonl:4: record 'toy-0003': 'filepaths' must be"):
        main(["train", str(config_file)])

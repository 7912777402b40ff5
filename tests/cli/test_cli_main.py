"""The ``clamp3`` entry point: commands listed by stage, and the one error -> exit status rule."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pytest

from clamp3.cli import main as cli
from clamp3.cli.main import STAGES, build_parser, main


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_help_lists_every_visible_command_once_by_stage():
    parser = build_parser()
    text = parser.format_help()
    listed = [name for _, names in STAGES for name in names]
    assert len(listed) == len(set(listed))
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    # every listed command exists; the others are the hidden former names
    assert set(listed) <= set(sub.choices)
    assert set(sub.choices) - set(listed) == {"pretrain-m3", "train-presets"}
    positions = [text.index(f"\n  {stage}\n") for stage, _ in STAGES]
    assert positions == sorted(positions)


def _subcommands(parser: argparse.ArgumentParser, path: str = ""):
    """(``"probe train"``, its parser) for every command and sub-command, depth first."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield f"{path} {name}".strip(), child
                yield from _subcommands(child, f"{path} {name}")


def test_every_command_that_shows_progress_takes_quiet_and_no_progress_alike():
    """One flag, two spellings: `--quiet` was refused by embed, zero-shot, gen-score, probe,
    curate and extract-audio, `--no-progress` by index, convert, build-corpus and demo."""
    with_flag = []
    for name, parser in _subcommands(build_parser()):
        spellings = {o for a in parser._actions for o in a.option_strings} & {"--quiet", "--no-progress"}
        if spellings:
            with_flag.append(name)
            assert spellings == {"--quiet", "--no-progress"}, name
            quiet = next(a for a in parser._actions if "--quiet" in a.option_strings)
            assert quiet.dest == "quiet" and "--no-progress" in quiet.option_strings, name
    assert {"embed", "index", "convert", "zero-shot", "gen-score", "probe train", "demo"} <= set(with_flag)


def _registered(parser: argparse.ArgumentParser) -> set[str]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices)


# Bare int/float options whose every value means something (a seed) or that the library checks
# with the other settings it is compared to (a fraction < 1, a key count 0-11 beside the corpus).
UNCHECKED_NUMBERS = {"--seed", "--val-split", "--transpose"}
CURATE = ["curate", "catalogue.csv", "docs", "out.jsonl"]


def test_every_numeric_option_is_checked_when_the_arguments_are_parsed():
    """A zero, negative or NaN count, size or time is a usage error naming the option (exit 2),
    never a silently accepted value: curate's --timeout 0 sent requests that could not succeed,
    extract-audio's --batch-size 0 meant 16."""
    bare = []
    for name, parser in _subcommands(build_parser()):
        for action in parser._actions:
            if action.type in (int, float) and action.option_strings[0] not in UNCHECKED_NUMBERS:
                bare.append(f"{name} {action.option_strings[0]}")
    assert bare == []
    for argv in (
        [*CURATE, "--llm-url", "http://h/v1", "--llm-model", "m", "--timeout", "0"],
        [*CURATE, "--llm-url", "localhost:8000/v1", "--llm-model", "m"],  # no scheme: not a URL
        ["extract-audio", "in", "out", "--batch-size", "0"],
        ["probe", "train", "emb", "out", "--labels-from-folders", "--lr", "nan"],
        ["train", "config.json", "--stop-after", "-1"],
    ):
        with pytest.raises(SystemExit) as info:
            build_parser().parse_args(argv)
        assert info.value.code == 2, argv


def test_each_command_module_registers_the_commands_listed_with_it():
    # `clamp3 COMMAND` imports only the module that COMMAND_MODULES names for it.
    for names in cli.COMMAND_MODULES.values():
        for name in names:
            assert _registered(build_parser(name)) == set(names)
    every = [name for names in cli.COMMAND_MODULES.values() for name in names]
    assert len(every) == len(set(every)) and _registered(build_parser()) == set(every)
    assert _registered(build_parser("serch")) == set(every)  # a typo: argparse lists them all


def test_a_command_imports_its_module_only():
    import ast
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys\n"
        "from clamp3.cli.main import build_parser\n"
        "build_parser('search')\n"
        "print(sorted(m for m in sys.modules if m.startswith(('clamp3.cli.', 'clamp3.serve'))))\n"
    )
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=True
    )
    loaded = set(ast.literal_eval(run.stdout.strip().splitlines()[-1]))
    assert not any(m.startswith("clamp3.serve") for m in loaded)
    # besides cli.index, at most cli.embed (shared model arguments) of the command modules
    assert "clamp3.cli.index" in loaded and loaded & set(cli.COMMAND_MODULES) <= {
        "clamp3.cli.index",
        "clamp3.cli.embed",
    }


@pytest.mark.parametrize(
    "args, reason",
    [
        # probe, zero-shot and gen-score had a wrapper of their own that also took ValueError
        (["gen-score", "--generated", "gen_dir"], "give --prompts, --reference or both"),
        (["zero-shot", ".", "--labels", "a,b", "--model", "missing_model"], "missing_model"),
        # a missing input is found before the model loads (it tried the default 'saas' weights)
        (["zero-shot", "x.mid", "--labels", "a,b"], "x.mid: no such file or folder"),
        (["gen-score", "--generated", "gen_dir", "--prompts", "p.csv"], "gen_dir: no such file or folder"),
        (["extract-audio", "missing_dir", "out"], "missing_dir: no such file or folder"),
        (["embed", "missing_dir", "out"], "missing_dir: no such file or folder"),
        (["probe", "predict", "missing_probe", "emb", "out"], "missing_probe"),
        (["convert", "missing_dir", "out"], "input directory not found"),
        (["presets", "--help-me"], None),  # argparse's own usage error: exit 2 as well
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(args, reason, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if reason is None:
        with pytest.raises(SystemExit) as info:
            main(args)
        assert info.value.code == 2
        return
    assert main(args) == 2
    assert reason in _one_error_line(capsys)


def _handler_raising(exc: BaseException):
    def handler(args: argparse.Namespace) -> int:
        raise exc

    return handler


def _run_with(monkeypatch, exc: BaseException, argv: list[str]) -> int:
    real = cli.build_parser

    def parser_with_failing_presets(command=None):
        parser = real(command)
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        sub.choices["presets"].set_defaults(handler=_handler_raising(exc))
        return parser

    monkeypatch.setattr(cli, "build_parser", parser_with_failing_presets)
    return main(argv)


def test_the_rule_covers_value_errors_paths_and_custom_statuses(monkeypatch, capsys):
    from clamp3.curate.transport import LLMConfigError
    from clamp3.utils.errors import UsageError

    assert _run_with(monkeypatch, ValueError("threshold must be positive"), ["presets"]) == 2
    assert _one_error_line(capsys) == "error: threshold must be positive"
    assert _run_with(monkeypatch, UsageError("--a needs --b"), ["presets"]) == 2
    assert _one_error_line(capsys) == "error: --a needs --b"
    assert _run_with(monkeypatch, NotADirectoryError("x: not a folder"), ["presets"]) == 2
    _one_error_line(capsys)
    assert _run_with(monkeypatch, LLMConfigError("401 from the endpoint"), ["presets"]) == 4
    assert _one_error_line(capsys) == "error: 401 from the endpoint"
    # an OS error names its path first, without Python's "[Errno 17] ...: 'out'" form
    assert _run_with(monkeypatch, FileExistsError(17, "File exists", "out"), ["presets"]) == 2
    assert _one_error_line(capsys) == "error: out: exists and is not a folder"
    assert _run_with(monkeypatch, PermissionError(13, "Permission denied", "/x.json"), ["presets"]) == 2
    assert _one_error_line(capsys) == "error: /x.json: Permission denied"


def test_an_unwritable_output_is_named_not_its_temporary(tmp_path):
    from clamp3.utils.io import write_json_atomic

    (tmp_path / "afile").write_text("")
    with pytest.raises(OSError) as info:
        write_json_atomic(tmp_path / "afile" / "x.json", {})
    assert info.value.filename == str(tmp_path / "afile")  # mkdir of the folder: the file is in the way
    target = Path("/proc/clamp3-test.json")  # a folder where no file can be made
    with pytest.raises(OSError) as info:
        write_json_atomic(target, {})
    assert info.value.filename == str(target) and ".tmp" not in str(info.value)


def test_a_bug_keeps_its_traceback_and_verbose_shows_every_traceback(monkeypatch):
    with pytest.raises(RuntimeError):
        _run_with(monkeypatch, RuntimeError("a bug"), ["presets"])
    with pytest.raises(ValueError):
        _run_with(monkeypatch, ValueError("bad"), ["-v", "presets"])


def test_search_and_serve_default_the_model_by_one_library_rule(tmp_path, tiny_model_dir):
    from types import SimpleNamespace

    import torch

    from clamp3.loading import load_pipeline
    from clamp3.pipeline import Clamp3Pipeline
    from clamp3.utils.errors import InputError

    built_with = SimpleNamespace(model=str(tiny_model_dir), directory=tmp_path / "idx")
    recorded = load_pipeline(None, index=built_with, device="cpu")
    assert isinstance(recorded, Clamp3Pipeline)
    assert recorded.model.weight_source.directory == tiny_model_dir
    assert recorded.device.type == "cpu" and recorded.model.dtype == torch.float32
    other = SimpleNamespace(model="/models/not-there", directory=tmp_path / "idx")
    given = load_pipeline(tiny_model_dir, index=other, device="cpu", dtype="bf16")  # given wins
    assert given.model.dtype == torch.bfloat16
    assert load_pipeline(recorded, index=other) is recorded  # a pipeline is used as it is
    with pytest.raises(InputError) as info:
        load_pipeline(None, index=SimpleNamespace(model=None, directory=tmp_path / "idx"))
    assert info.value.path == str(tmp_path / "idx") and "--model" in info.value.reason


def test_the_one_loader_refuses_a_dtype_for_an_onnx_export_and_a_missing_device(tmp_path, capsys):
    from clamp3.loading import load_pipeline
    from clamp3.onnx.layout import MANIFEST_NAME
    from clamp3.utils.errors import InputError, UsageError

    export = tmp_path / "export"
    export.mkdir()
    (export / MANIFEST_NAME).write_text("{}")  # refused before anything is read
    with pytest.raises(InputError) as info:
        load_pipeline(export, dtype="fp16")
    assert "exported with" in info.value.reason
    if not torch_cuda_available():
        with pytest.raises(UsageError):
            load_pipeline("saas", device="cuda")
        # the CLI maps the same refusal to one line and exit status 2, before any weights load
        assert main(["embed", str(tmp_path), str(tmp_path / "out"), "--device", "cuda"]) == 2
        assert "CUDA is not available" in _one_error_line(capsys)


def torch_cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def test_settings_come_from_the_arguments_of_the_same_name():
    from dataclasses import dataclass

    from clamp3.cli.args import settings_from

    @dataclass
    class Settings:
        batch_size: int = 32
        seed: int = 0
        show_progress: bool = True

    args = argparse.Namespace(batch_size=8, quiet=True, unrelated="x")
    assert settings_from(Settings, args, show_progress=not args.quiet) == Settings(8, 0, False)
    # the probe's --epochs fills max_epochs: the command line and the dataclass agree on dests
    parsed = build_parser().parse_args(["probe", "train", "emb", "out", "--labels", "l.csv", "--epochs", "7"])
    from clamp3.evaluate.probe_train import ProbeSettings

    assert settings_from(ProbeSettings, parsed).max_epochs == 7


def test_warnings_of_clamp3_code_are_log_lines_and_other_warnings_keep_their_form(monkeypatch, caplog):
    import warnings

    from clamp3.evaluate.frechet import frechet_bootstrap

    seen = []

    def handler(args: argparse.Namespace) -> int:
        frechet_bootstrap(np.eye(3, 8), np.eye(4, 8), n_resamples=0)  # warns inside clamp3: N < D
        warnings.warn("a warning of another package", UserWarning, stacklevel=1)  # from this file, not clamp3
        return 0

    real = cli.build_parser

    def parser(command=None):
        built = real(command)
        sub = next(a for a in built._actions if isinstance(a, argparse._SubParsersAction))
        sub.choices["presets"].set_defaults(handler=handler)
        return built

    monkeypatch.setattr(cli, "build_parser", parser)
    monkeypatch.setattr(warnings, "showwarning", lambda message, *rest: seen.append(str(message)))
    default = warnings.showwarning
    with caplog.at_level(logging.WARNING, "clamp3"):
        assert main(["presets"]) == 0
    assert [r.name for r in caplog.records if "N < D" in r.getMessage()] == ["clamp3.evaluate.frechet"]
    assert seen == ["a warning of another package"]  # Python's own display, untouched
    assert warnings.showwarning is default  # restored when the command ends


def test_version_names_clamp3_python_and_the_engines(capsys):
    import clamp3

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    out = capsys.readouterr().out
    assert info.value.code == 0 and out.startswith(f"clamp3 {clamp3.__version__} (Python 3.")
    assert "torch " in out and "transformers " in out


def test_a_closed_pipe_stops_quietly_with_status_141(monkeypatch, capsys):
    """`clamp3 presets | head -1` printed BrokenPipeError's traceback."""
    assert _run_with(monkeypatch, BrokenPipeError(32, "Broken pipe"), ["presets"]) == 141
    assert capsys.readouterr().err == ""


def test_a_reader_that_stops_early_ends_the_command_with_141_and_no_traceback():
    import os
    import subprocess
    import sys

    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    # The command starts once the reader has gone, so its whole (buffered) output meets a closed
    # pipe: the interpreter's flush at exit printed "Exception ignored ... BrokenPipeError".
    code = "import sys; sys.stdin.readline(); from clamp3.cli.main import main; "
    code += "sys.exit(main(['presets', 'tiny']))"
    env.pop("PYTHONUNBUFFERED", None)  # stdout block-buffered, as on most machines
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    run = subprocess.Popen([sys.executable, "-c", code], env=env, **pipes)
    run.stdout.close()  # as `| head -1` does once it has its line
    run.stdin.write(b"go\n")
    run.stdin.close()
    assert run.wait(timeout=120) == 141
    err = run.stderr.read()
    assert b"Traceback" not in err and b"BrokenPipeError" not in err, err


def test_a_broken_pipe_that_is_not_stdout_keeps_its_traceback(monkeypatch, capfd):
    """A worker's pipe breaking is a bug, not a reader that went away (stdout here is open)."""
    with pytest.raises(BrokenPipeError):
        _run_with(monkeypatch, BrokenPipeError(32, "Broken pipe"), ["presets"])


def test_a_file_in_the_way_of_an_output_folder_is_named(monkeypatch, capsys, tmp_path):
    """``build-corpus notes.txt`` said ``notes.txt/pieces: Not a directory``."""
    (tmp_path / "notes.txt").write_text("")
    exc = NotADirectoryError(20, "Not a directory", str(tmp_path / "notes.txt" / "pieces" / "a"))
    assert _run_with(monkeypatch, exc, ["presets"]) == 2
    assert _one_error_line(capsys) == f"error: {tmp_path / 'notes.txt'}: is a file, not a folder"

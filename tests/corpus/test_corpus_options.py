"""Bad build settings fail once, before any piece, and are never logged as piece failures;
an empty build is a one-line error, not a crash in the evaluation-folder swap."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("music21")
pytest.importorskip("abctoolkit")
pytest.importorskip("soundfile")

from clamp3.corpus import BuildOptions, PieceRef, build_corpus, render  # noqa: E402
from clamp3.corpus import build as build_module  # noqa: E402
from clamp3.corpus import piece as piece_module  # noqa: E402
from clamp3.corpus.assemble import assemble  # noqa: E402
from clamp3.corpus.build import check_options
from clamp3.corpus.options import ConfigError  # noqa: E402
from clamp3.utils.errors import InputError  # noqa: E402
from clamp3.utils.io import read_jsonl  # noqa: E402

GOOD = PieceRef("bach-bwv66_6", "bach/bwv66.6.mxl", None, "bach", "bach:bach/bwv66.6")
BAD = PieceRef("essenFolksong-erk20-99999", "essenFolksong/erk20.abc", 99999, "essen", "essen:missing")


def _no_worker(*args, **kwargs):
    raise AssertionError("a worker ran although the settings were wrong")


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"features": "nosuch"}, "unknown preset 'nosuch'"),
        ({"features": "m3"}, "no 'audio' tower"),  # a preset without an audio front-end
        ({"synth": "fluidsynth"}, "fluid-soundfont-gm"),
    ],
)
def test_bad_settings_fail_before_any_worker_and_write_nothing(tmp_path, monkeypatch, options, match):
    monkeypatch.setattr(render, "find_fluidsynth", lambda: None)  # FluidSynth "not installed"
    monkeypatch.setattr(build_module, "_worker", _no_worker)
    out = tmp_path / "corpus"
    with pytest.raises(ConfigError, match=match):
        build_corpus(
            out, options=BuildOptions(seconds_max=2.0, **options), candidates=[GOOD], show_progress=False
        )
    assert not out.exists()  # no folder, hence no errors.jsonl that would skip pieces later


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"audio": False, "features": "mini"}, "features need audio"),
        ({"seconds_max": -1.0}, "seconds_max"),
        ({"seconds_max": float("nan")}, "seconds_max"),
        ({"synth": "fluidsynt"}, "unknown synthesizer"),
    ],
)
def test_inconsistent_options_are_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        BuildOptions(**kwargs)


@pytest.mark.parametrize(("kwargs", "name"), [({"pieces": 0}, "pieces"), ({"pieces": -2}, "pieces"),
                                              ({"workers": 0}, "workers"), ({"timeout": 0.0}, "timeout")])  # fmt: skip
def test_counts_below_one_are_refused_before_anything_is_written(tmp_path, kwargs, name):
    with pytest.raises(ConfigError, match=name):
        build_corpus(tmp_path / "c", candidates=[GOOD], options=BuildOptions(audio=False), **kwargs)
    assert not (tmp_path / "c").exists()


def test_check_options_accepts_working_settings():
    check_options(BuildOptions(features="mini"))
    check_options(BuildOptions(audio=False, synth="additive"))


def test_a_config_error_inside_a_worker_stops_the_build_and_blames_no_piece(tmp_path, monkeypatch):
    # The front-end's weights cannot be loaded (as MERT offline): every piece would fail alike.
    def unavailable(*args, **kwargs):
        raise OSError("MERT weights not found")

    monkeypatch.setattr("clamp3.audio.load_frontend", unavailable)
    monkeypatch.setattr(piece_module, "_FRONTENDS", {})
    out = tmp_path / "corpus"
    options = BuildOptions(seconds_max=2.0, synth="additive", features="tiny")
    with pytest.raises(ConfigError, match="cannot load the audio front-end.*MERT weights not found"):
        build_corpus(out, workers=1, options=options, candidates=[GOOD], show_progress=False)
    assert read_jsonl(out / "errors.jsonl") == []  # the piece is not skipped in later runs
    assert not (out / "manifest.json").exists()


def test_a_build_where_every_piece_fails_is_an_input_error(tmp_path):
    out = tmp_path / "corpus"
    with pytest.raises(InputError, match="no piece was built.*--retry-failed"):
        build_corpus(out, workers=1, options=BuildOptions(audio=False), candidates=[BAD], show_progress=False)
    assert [e["id"] for e in read_jsonl(out / "errors.jsonl")] == [BAD.id]  # a content error is logged


def test_assemble_refuses_an_empty_build_and_keeps_the_old_datasets(tmp_path):
    (tmp_path / "eval" / "test").mkdir(parents=True)
    (tmp_path / "splits.json").write_text(json.dumps({"test": ["a"]}), encoding="utf-8")
    with pytest.raises(InputError, match="no piece was built"):
        assemble(tmp_path, [], BuildOptions(audio=False))
    assert (tmp_path / "eval" / "test").is_dir()
    assert json.loads((tmp_path / "splits.json").read_text(encoding="utf-8")) == {"test": ["a"]}


# ------------------------------------------------------------------ through the command line
@pytest.mark.parametrize(
    "argv",
    [
        ["--pieces", "0"],
        ["--pieces", "-4"],
        ["--seconds-max", "-1"],
        ["--seconds-max", "nan"],
        ["--workers", "0"],
        ["--timeout", "-5"],
    ],
)
def test_cli_refuses_bad_numbers_with_a_usage_error(tmp_path, capsys, monkeypatch, argv):
    from clamp3.cli.main import main

    monkeypatch.setattr(build_module, "_worker", _no_worker)

    with pytest.raises(SystemExit) as exit_info:
        main(["build-corpus", str(tmp_path / "c"), *argv])
    assert exit_info.value.code == 2
    assert f"argument {argv[0]}: " in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--no-audio", "--features", "mini"], "error: features: audio features need audio"),
        (["--features", "nosuch"], "error: features: unknown preset 'nosuch'"),
    ],
)
def test_cli_reports_bad_settings_in_one_line_with_status_2(tmp_path, capsys, monkeypatch, argv, message):
    from clamp3.cli.main import main

    monkeypatch.setattr(build_module, "_worker", _no_worker)

    assert main(["build-corpus", str(tmp_path / "c"), "--quiet", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "c").exists()

"""One tree walker, one hidden-file policy: every command that lists a folder sees the same
files of one tree holding hidden files and folders, an output folder and an unlistable folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clamp3.utils.walk import walk_files

VISIBLE = ["a.mid", "b.abc", "c.xml", "d.txt", "e.wav", "f.npy", "g.mtf", "h.html", "sub/j.MID", "sub/k.flac"]
HIDDEN = [
    ".hidden.mid",
    ".e.wav",
    ".f.npy.x1y2.tmp",
    ".git/h.mid",
    ".cache/i.wav",
    "sub/.l.abc",
    "sub/.m/n.npy",
]
OUTPUT = ["out/o.npy", "out/p.mtf"]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    for rel in VISIBLE + HIDDEN + OUTPUT:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    return root


def _visible(suffixes: tuple[str, ...], with_output: bool = False) -> list[str]:
    names = VISIBLE + (OUTPUT if with_output else [])
    return sorted(n for n in names if Path(n).suffix.lower() in suffixes)


def _rel(paths, root: Path) -> list[str]:
    return sorted(Path(p).relative_to(root).as_posix() for p in paths)


def test_every_caller_sees_the_same_files(tree):
    from clamp3.audio.extract import list_audio_files
    from clamp3.curate.documents import read_documents
    from clamp3.embed_folder import list_inputs
    from clamp3.evaluate.items import collect_files
    from clamp3.index.embeddings import find_npy_files
    from clamp3.inputs import extensions
    from clamp3.preprocess.bulk import plan_jobs
    from clamp3.train.records import list_symbolic_files

    out = tree / "out"
    embed = _rel(list_inputs(tree, exclude=out).files, tree)
    assert embed == _visible(extensions())
    convert = _rel((job.source for job in plan_jobs(tree, out)[0]), tree)
    assert convert == _visible((".mid", ".xml"))
    assert _rel(list_audio_files(tree, exclude=out).files, tree) == _visible((".wav", ".flac"))
    assert _rel(find_npy_files(tree).files, tree) == _visible((".npy",), with_output=True)
    assert [rel for _, rel in collect_files([tree])] == _visible(extensions(), with_output=True)
    assert _rel(list_symbolic_files(tree), tree) == _visible((".abc", ".mtf"), with_output=True)
    (tree / "d.txt").write_text("some words", encoding="utf-8")
    (tree / "h.html").write_text("<p>more words</p>", encoding="utf-8")
    passages, count, errors = read_documents(tree)
    assert sorted({p.doc_id for p in passages}) == ["d.txt", "h.html"] and not errors


@pytest.fixture
def sub_unlistable(monkeypatch):
    """``os.scandir`` (what ``os.walk`` lists with) refuses the folder named ``sub``."""
    real = os.scandir

    def scandir(path):
        if Path(path).name == "sub":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)


def test_listing_is_sorted(tree):
    listing = walk_files(tree)
    assert listing.files == sorted(listing.files) and not listing.errors


def test_an_unlistable_folder_is_reported_and_the_rest_listed(tree, sub_unlistable):
    from clamp3.embed_folder import list_inputs
    from clamp3.preprocess.bulk import plan_jobs

    listing = walk_files(tree, skip=[tree / "out"])
    (error,) = listing.errors
    assert error.path == str(tree / "sub") and "Permission denied" in error.reason
    assert _rel(listing.files, tree) == sorted(n for n in VISIBLE if not n.startswith("sub/"))
    _, rejected = plan_jobs(tree, tree / "out")  # convert logs it to errors.jsonl
    assert [path for path, _ in rejected] == [str(tree / "sub")]
    assert [e.path for e in list_inputs(tree, exclude=tree / "out").errors] == [str(tree / "sub")]

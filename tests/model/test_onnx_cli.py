"""The ONNX backend behind the commands: ``export-onnx``, and ``search``, ``embed``,
``zero-shot`` and the search service taking an exported directory as ``--model``; the text
query path imports neither torch nor transformers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from clamp3.cli.main import main  # noqa: E402

TEXTS = {
    "waltz.txt": "a melancholy waltz for solo piano",
    "lied.txt": "ein fröhliches Volkslied in G-Dur",
    "fugue.txt": "une fugue pour orgue en ré mineur",
    "quartet.txt": "string quartet in four movements, slow second movement",
}


@pytest.fixture(scope="module")
def library(tiny_model_dir, tmp_path_factory):
    """Texts and audio features embedded with the torch model, indexed; the model exported."""
    root = tmp_path_factory.mktemp("onnx_cli")
    docs = root / "docs"
    docs.mkdir()
    for name, text in TEXTS.items():
        (docs / name).write_text(text, encoding="utf-8")
    rng = np.random.default_rng(0)
    for n in (3, 11):
        np.save(docs / f"take{n}.npy", rng.standard_normal((1, n, 32)).astype(np.float32))
    assert main(["export-onnx", str(tiny_model_dir), str(root / "onnx"), "--towers", "text,audio"]) == 0
    assert main(["embed", str(docs), str(root / "emb"), "--model", str(tiny_model_dir), "--no-progress"]) == 0
    assert main(["index", str(root / "emb"), str(root / "idx"), "--quiet"]) == 0
    return root


def _search_json(argv: list[str], capsys) -> list[dict]:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_search_with_the_export_equals_torch(library, tiny_model_dir, capsys):
    query = "a waltz for piano"
    want = _search_json(["search", query, str(library / "idx"), "--model", str(tiny_model_dir)], capsys)
    got = _search_json(["search", query, str(library / "idx"), "--model", str(library / "onnx")], capsys)
    assert [r["path"] for r in got] == [r["path"] for r in want]
    np.testing.assert_allclose([r["score"] for r in got], [r["score"] for r in want], atol=1e-5)
    assert "not the model that embedded the index" not in capsys.readouterr().err  # same fingerprint


def _env() -> dict[str, str]:
    """The environment of a fresh interpreter that imports this checkout's clamp3."""
    src = str(Path(__file__).resolve().parents[2] / "src")
    return {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _fresh_report(code: str) -> tuple[dict, subprocess.CompletedProcess]:
    """Run ``code`` in a fresh interpreter; (the JSON it printed last on stderr, the run)."""
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120
    )
    return json.loads(run.stderr.strip().splitlines()[-1]), run


def test_text_search_imports_neither_torch_nor_transformers(library):
    code = (
        "import json, sys\n"
        "from clamp3.cli.main import main\n"
        f"rc = main(['search', 'a waltz for piano', {str(library / 'idx')!r}, '--model', "
        f"{str(library / 'onnx')!r}, '--top-k', '2'])\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers'))\n"
        "print(json.dumps({'rc': rc, 'loaded': loaded}), file=sys.stderr)\n"
    )
    report, run = _fresh_report(code)
    assert report == {"rc": 0, "loaded": []}, run.stderr
    assert "waltz.txt" in run.stdout


def test_serve_with_the_export_and_threads_imports_neither_torch_nor_transformers(library):
    # `clamp3 serve IDX --model EXPORT --threads 1`, uvicorn replaced by one request to the app.
    pytest.importorskip("fastapi")
    code = (
        "import json, sys, uvicorn\n"
        "from fastapi.testclient import TestClient\n"
        "from clamp3.cli.main import main\n"
        "def answer(app, **kwargs):\n"
        "    with TestClient(app, base_url='http://127.0.0.1:8000') as client:\n"
        "        reply = client.get('/api/search', params={'q': 'a waltz for piano', 'k': 2})\n"
        "    print(reply.status_code, json.dumps(reply.json()))\n"
        "uvicorn.run = answer\n"
        "import clamp3.onnx.session as session\n"
        "threads, opened = [], session.TowerSession.__init__\n"
        "def record(self, path, modality, device=None, threads_=None, **options):\n"
        "    threads.append(threads_)\n"
        "    opened(self, path, modality, device, threads_, **options)\n"
        "session.TowerSession.__init__ = record\n"
        f"rc = main(['serve', {str(library / 'idx')!r}, '--media-root', {str(library / 'docs')!r}, "
        f"'--model', {str(library / 'onnx')!r}, '--threads', '1'])\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers'))\n"
        "print(json.dumps({'rc': rc, 'loaded': loaded, 'threads': sorted(set(threads))}), file=sys.stderr)\n"
    )
    report, run = _fresh_report(code)
    assert report == {"rc": 0, "loaded": [], "threads": [1]}, run.stderr
    assert run.stdout.startswith("200 ") and "waltz.txt" in run.stdout


def test_embed_with_the_export_matches_torch_and_resumes_a_torch_folder(library, tmp_path):
    out = tmp_path / "emb"
    assert (
        main(["embed", str(library / "docs"), str(out), "--model", str(library / "onnx"), "--no-progress"])
        == 0
    )
    files = sorted(p.relative_to(out) for p in out.rglob("*.npy"))
    assert len(files) == len(TEXTS) + 2
    for rel in files:
        np.testing.assert_allclose(np.load(out / rel), np.load(library / "emb" / rel), atol=1e-4, rtol=1e-4)
    # Same fingerprint as the source model: a torch-embedded folder is resumed, not refused.
    assert (
        main(["embed", str(library / "docs"), str(out), "--model", str(library / "onnx"), "--no-progress"])
        == 0
    )


def test_zero_shot_and_dtype_refusal(library, capsys):
    argv = ["zero-shot", str(library / "docs"), "--labels", "waltz,fugue", "--model", str(library / "onnx")]
    assert main(argv) == 0
    assert "waltz" in capsys.readouterr().out
    assert (
        main(["search", "x y", str(library / "idx"), "--model", str(library / "onnx"), "--dtype", "fp16"])
        == 2
    )
    assert "precision it was exported with" in capsys.readouterr().err


def test_service_answers_with_the_export(library):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from clamp3.backends import load
    from clamp3.serve.service import build_app

    app = build_app(library / "idx", library / "docs", load(library / "onnx"))
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        answer = client.get("/api/search", params={"q": "a waltz for piano", "k": 2})
        assert answer.status_code == 200, answer.text
        assert "waltz" in json.dumps(answer.json())


def test_export_cli_errors_are_one_line(tiny_model_dir, tmp_path, capsys):
    assert (
        main(["export-onnx", str(tiny_model_dir), str(tmp_path / "x"), "--quantize", "int8", "--fp16"]) == 2
    )
    assert "choose one" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export-onnx", str(tiny_model_dir), str(tmp_path / "x"), "--towers", "text,video"])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    assert main(["export-onnx", str(tiny_model_dir), str(tmp_path / "full")]) == 2
    assert "already exists" in capsys.readouterr().err

"""A ready-made demo corpus for the demo tests (``clamp3 demo`` reuses a built corpus)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

LANGS = ("en", "de", "fr", "es", "zh")


def ready_corpus(work: Path, parity_dir: Path, n_test: int, pieces: int) -> None:
    """``work/corpus`` as ``clamp3 demo --pieces PIECES --seconds-max 4`` would leave it (so the
    demo reuses it), with ``n_test`` test pieces: parity ABC / MTF, sine WAVs, 5 languages, and
    each piece's folder (MusicXML, MIDI, WAV, facts) as the search page serves them."""
    sf = pytest.importorskip("soundfile")
    corpus = work / "corpus"
    test = corpus / "eval" / "test"
    abcs = sorted((parity_dir / "prep" / "abc_interleaved").glob("*.abc"))[:n_test]
    mtfs = sorted((parity_dir / "prep" / "mtf").glob("*.mtf"))[:n_test]
    records = []
    for i, (abc, mtf) in enumerate(zip(abcs, mtfs)):
        pid = f"piece{i}"
        for folder, src in (("sheet", abc), ("midi", mtf)):
            (test / folder).mkdir(parents=True, exist_ok=True)
            shutil.copy(src, test / folder / f"{pid}{src.suffix}")
        (test / "audio").mkdir(parents=True, exist_ok=True)
        t = np.arange(24000 * 2) / 24000
        sf.write(test / "audio" / f"{pid}.wav", 0.3 * np.sin(2 * np.pi * 220 * (i + 1) * t), 24000)
        for lang in LANGS:
            (test / f"text_{lang}").mkdir(parents=True, exist_ok=True)
            (test / f"text_{lang}" / f"{pid}.txt").write_text(f"{lang} piece {i}\n", encoding="utf-8")
        records.append({"id": pid, "title": f"Title {i}"})
        _piece_folder(corpus / "pieces" / pid, parity_dir, i, test / "audio" / f"{pid}.wav")
    corpus.mkdir(parents=True, exist_ok=True)
    (corpus / "m4rag_test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    train = [f"train{i}" for i in range(pieces - len(records))]
    splits = {"train": train, "validation": [], "test": [r["id"] for r in records]}
    (corpus / "splits.json").write_text(json.dumps(splits), encoding="utf-8")
    from clamp3.demo import DemoOptions

    options = {"seconds_max": 4.0, "audio": True, "synth": "auto", "features": "mini"}
    options["train_titles"] = DemoOptions.train_titles  # what the demo's default corpus holds
    manifest = {"pieces": pieces, "options": options}
    (corpus / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


def _piece_folder(piece: Path, parity_dir: Path, i: int, wav: Path) -> None:
    """``corpus/pieces/<id>/``: a parity MusicXML and MIDI, the piece's WAV, its facts."""
    import zipfile

    mxls = sorted((parity_dir / "inputs" / "musicxml").glob("*.mxl"))
    mids = sorted((parity_dir / "inputs" / "midi").glob("*.mid"))
    piece.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(mxls[i % len(mxls)]) as mxl:  # the corpus writes plain MusicXML
        member = next(n for n in mxl.namelist() if n.endswith((".xml", ".musicxml")) and "META-INF" not in n)
        (piece / "score.musicxml").write_bytes(mxl.read(member))
    shutil.copy(mids[i % len(mids)], piece / "score.mid")
    shutil.copy(wav, piece / "audio.wav")
    facts = {"id": piece.name, "title": f"Title {i}: a/b", "collection_name": "Test Collection"}
    (piece / "facts.json").write_text(json.dumps(facts), encoding="utf-8")

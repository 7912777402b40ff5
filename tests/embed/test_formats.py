"""The embedding folder's manifest: one versioned record, one writer, one reader."""

from __future__ import annotations

import json

import pytest
from embedding_support import manifest_record, write_manifest

from clamp3.formats import MANIFEST_VERSION, ManifestRecord, read_manifest
from clamp3.utils.errors import InputError


def test_records_round_trip_through_the_writer_and_reader_rank_by_rank(tmp_path):
    a, b = manifest_record("a.mid", "a.npy"), manifest_record("b.txt", "b.npy", "text", shape=(1, 768))
    write_manifest(tmp_path, [b], rank=1)
    write_manifest(tmp_path, [a])
    assert read_manifest(tmp_path) == [a, b]  # rank 0 first, then rank 1
    line = json.loads((tmp_path / "manifest.jsonl").read_text(encoding="utf-8"))
    assert (
        line["version"] == MANIFEST_VERSION and line["shape"] == [1, 4] and line["model_fingerprint"] == "m:0"
    )
    assert read_manifest(tmp_path / "nowhere") == []


def test_the_reader_names_the_file_for_foreign_or_newer_records(tmp_path):
    manifest = tmp_path / "manifest.jsonl"
    record = manifest_record("a.mid", "a.npy").to_json()
    del record["version"]  # written before versions: same fields, read as version 0
    manifest.write_text(json.dumps(record) + "\n", encoding="utf-8")
    assert read_manifest(tmp_path)[0].version == 0
    manifest.write_text(
        json.dumps({"path": "a.mid", "npy": "a.npy", "model": "saas"}) + "\n", encoding="utf-8"
    )
    with pytest.raises(InputError, match="'a.npy' lacks modality, n_items") as caught:
        read_manifest(tmp_path)
    assert caught.value.path == str(manifest)
    manifest.write_text(json.dumps({**record, "version": MANIFEST_VERSION + 1}) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match="written by a newer clamp3"):
        read_manifest(tmp_path)
    assert ManifestRecord.from_json(manifest_record("x", "x.npy").to_json(), "here").identity.id == "m"

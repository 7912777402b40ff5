"""Reading embedding folders: keys, manifest, and clear errors for bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from embedding_support import manifest_record, write_manifest

from clamp3.index import load_embeddings
from clamp3.model_identity import ModelIdentity, ModelMismatch
from clamp3.utils.errors import InputError


def _save(path, array) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.asarray(array, dtype=np.float32))


def test_keys_shapes_and_manifest(tmp_path, rng):
    a, b, c = rng.standard_normal((3, 12)).astype(np.float32)
    _save(tmp_path / "pop" / "song.en.npy", a[None, :])  # (1, D), as embed writes
    _save(tmp_path / "jazz" / "tune.npy", b)  # (D,)
    _save(tmp_path / "z.npy", c[None, :])
    _save(tmp_path / ".hidden" / "x.npy", c)  # hidden folders are skipped
    manifest = [
        manifest_record("pop/song.en.txt", "pop/song.en.npy", "text", model="m1"),
        manifest_record("jazz/tune.mid", "jazz/tune.npy", "symbolic", model="m1"),
    ]
    write_manifest(tmp_path, manifest)
    emb = load_embeddings(tmp_path)
    assert emb.keys == ["jazz/tune", "pop/song.en", "z"]
    assert emb.paths == ["jazz/tune.mid", "pop/song.en.txt", "z.npy"]
    assert emb.modalities == ["symbolic", "text", None]
    assert emb.identity.id == "m1" and emb.dim == 12 and emb.vectors.dtype == np.float32
    np.testing.assert_array_equal(emb.vectors, np.stack([b, a, c]))


def test_empty_and_missing_folders(tmp_path):
    with pytest.raises(InputError, match="no .npy embeddings found"):
        load_embeddings(tmp_path)
    with pytest.raises(InputError, match="not found"):
        load_embeddings(tmp_path / "nope")


def test_mismatched_dimensions(tmp_path, rng):
    _save(tmp_path / "a.npy", rng.standard_normal((1, 8)))
    _save(tmp_path / "b.npy", rng.standard_normal((1, 9)))
    with pytest.raises(InputError, match=r"b\.npy: dimension 9 differs from the expected 8"):
        load_embeddings(tmp_path)
    emb = load_embeddings(tmp_path, skip_errors=True)
    assert emb.keys == ["a"] and [e.path for e in emb.errors] == [str(tmp_path / "b.npy")]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"not a numpy file", "unreadable .npy"),
        (None, r"got \(1, 5, 8\) \(unpooled"),
        ("nan", "NaN or infinity"),
        ("zero", "all zeros"),  # skipped like the others, not the end of an index build
    ],
)
def test_bad_files_name_the_file_and_reason(tmp_path, rng, content, reason):
    _save(tmp_path / "good.npy", rng.standard_normal((1, 8)))
    bad = tmp_path / "bad.npy"
    if content is None:
        _save(bad, rng.standard_normal((1, 5, 8)))
    elif content in ("nan", "zero"):
        _save(bad, np.full((1, 8), np.nan if content == "nan" else 0.0))
    else:
        bad.write_bytes(content)
    with pytest.raises(InputError, match=reason) as info:
        load_embeddings(tmp_path)
    assert info.value.path == str(bad)
    assert load_embeddings(tmp_path, skip_errors=True).keys == ["good"]


def test_several_models_in_one_folder_is_an_error(tmp_path, rng):
    _save(tmp_path / "a.npy", rng.standard_normal((1, 4)))
    _save(tmp_path / "b.npy", rng.standard_normal((1, 4)))
    write_manifest(tmp_path, [manifest_record("a.txt", "a.npy", "text", "m1", "m:1")])
    write_manifest(tmp_path, [manifest_record("b.txt", "b.npy", "text", "m2", "m:2")])
    with pytest.raises(ModelMismatch, match="m1 \\[fingerprint m:1\\] but others in the same folder"):
        load_embeddings(tmp_path)


def test_every_rank_manifest_is_read_and_models_compare_by_fingerprint(tmp_path, rng):
    for name in ("a", "b", "c"):
        _save(tmp_path / f"{name}.npy", rng.standard_normal((1, 4)))
    # One model that moved between runs: two paths, one fingerprint.
    write_manifest(tmp_path, [manifest_record("a.mid", "a.npy", "symbolic", "/old/m", "m:1")])
    rank1 = [
        manifest_record("b.txt", "b.npy", "text", "/new/m", "m:1"),
        manifest_record("c.wav", "c.npy", "audio", "/new/m", "m:1"),
    ]
    write_manifest(tmp_path, rank1, rank=1)
    emb = load_embeddings(tmp_path)
    assert emb.paths == ["a.mid", "b.txt", "c.wav"] and emb.modalities == ["symbolic", "text", "audio"]
    assert emb.identity == ModelIdentity("/new/m", "m:1")
    (tmp_path / "manifest.rank-1.jsonl").unlink()
    write_manifest(tmp_path, [rank1[0], manifest_record("c.wav", "c.npy", "audio", "/new/m", "m:2")], rank=1)
    with pytest.raises(ModelMismatch, match="several|fingerprint m:2"):
        load_embeddings(tmp_path)

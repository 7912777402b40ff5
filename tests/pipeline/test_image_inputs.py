"""Image inputs everywhere files are taken (issue 20): an image's vector is its caption's text
vector, through the pipeline, ``clamp3 embed``, ``search``, ``zero-shot`` and the service. The
captioner is a tiny random BLIP loaded through ``--captioner DIR`` / ``captioner=``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_images, write_image

from clamp3.cli.main import main
from clamp3.pipeline import Clamp3Pipeline
from clamp3.utils.io import read_jsonl

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models on busy cores: one thread is faster


def test_an_image_vector_is_the_text_vector_of_its_caption(image_pipeline, tiny_blip_dir, tmp_path):
    images = make_images(tmp_path)
    fresh = Clamp3Pipeline(image_pipeline.model, captioner=tiny_blip_dir)  # the shared one may be loaded
    assert not fresh.captioner.loaded  # named, not loaded, until an image comes
    fresh.encode_texts(["a text needs no captioner"])
    assert not fresh.captioner.loaded
    vectors = image_pipeline.encode_files(images)
    captions = [image_pipeline.captioner.caption(path) for path in images]
    assert len(set(captions)) == len(images)  # distinct captions: a mix-up would show
    np.testing.assert_allclose(vectors, image_pipeline.encode_texts(captions), atol=1e-6)
    item = image_pipeline.prepare_file(images[0])
    assert item.modality == "text" and item.caption == captions[0]


def _embed(args: list[str], capsys) -> tuple[int, str]:
    code = main(["embed", *args, "--no-progress"])
    return code, capsys.readouterr().err


def test_a_folder_of_images_embeds_with_captions_and_bad_images_fail_alone(
    image_pipeline, tiny_model_dir, tiny_blip_dir, tmp_path, capsys
):
    media, out = tmp_path / "media", tmp_path / "emb"
    images = make_images(media)
    (media / "notes.txt").write_text("a slow waltz", encoding="utf-8")
    good = (media / "scan.png").read_bytes()
    bad = {"empty.png": b"", "cut.png": good[: len(good) // 2], "fake.jpg": b"<html>not an image</html>"}
    for name, data in bad.items():
        (media / name).write_bytes(data)
    code, err = _embed(
        [str(media), str(out), "--model", str(tiny_model_dir), "--captioner", str(tiny_blip_dir)], capsys
    )
    assert code == 1 and "embedded 5, skipped 0 already done, failed 3" in err
    records = {r["path"]: r for r in read_jsonl(out / "manifest.jsonl")}
    for path in images:
        record = records[path.relative_to(media).as_posix()]
        caption = image_pipeline.captioner.caption(path)
        assert record["caption"] == caption and record["captioner"] == str(tiny_blip_dir)
        assert record["modality"] == "text"
        stored = np.load(out / record["npy"])[0]
        np.testing.assert_allclose(
            stored, image_pipeline.encode_texts([caption], normalize=False)[0], atol=1e-5
        )
    assert "caption" not in records["notes.txt"]
    errors = {r["path"]: r["reason"] for r in read_jsonl(out / "errors.jsonl")}
    assert errors.keys() == bad.keys()
    assert "empty" in errors["empty.png"] and "truncated or corrupt" in errors["cut.png"]
    assert "not a PNG, JPEG or WebP" in errors["fake.jpg"]
    code, err = _embed(
        [str(media), str(out), "--model", str(tiny_model_dir), "--captioner", str(tiny_blip_dir)], capsys
    )
    assert code == 1 and "embedded 0, skipped 5 already done, failed 3" in err  # a rerun resumes


def test_a_captioner_folder_given_relative_is_recorded_absolute(
    tiny_model_dir, tiny_blip_dir, tmp_path, capsys, monkeypatch
):
    """A manifest is read from other folders (index, serve): ``--captioner blip`` run inside the
    folder holding ``blip/`` records where the captioner is, as ``--model`` is recorded."""
    make_images(tmp_path / "media")
    monkeypatch.chdir(tiny_blip_dir.parent)
    argv = [str(tmp_path / "media"), str(tmp_path / "emb"), "--model", str(tiny_model_dir)]
    code, _ = _embed([*argv, "--captioner", tiny_blip_dir.name], capsys)
    assert code == 0
    recorded = {r["captioner"] for r in read_jsonl(tmp_path / "emb" / "manifest.jsonl")}
    assert recorded == {str(tiny_blip_dir.resolve())}

def test_offline_captioner_stops_the_run_once_naming_the_download(
    tiny_model_dir, tmp_path, capsys, monkeypatch
):
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True, raising=False)
    make_images(tmp_path / "media")
    code, err = _embed(
        [
            str(tmp_path / "media"),
            str(tmp_path / "emb"),
            "--model",
            str(tiny_model_dir),
            "--captioner",
            "nobody/blip",
        ],
        capsys,
    )
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1
    assert "'nobody/blip'" in lines[0] and "`hf download nobody/blip`" in lines[0]


def test_search_with_an_image_finds_the_image_and_prints_its_caption(
    image_index, image_pipeline, tiny_blip_dir, capsys
):
    media, idx = image_index
    query = media / "photos" / "page.jpg"
    assert main(["search", str(query), str(idx), "--captioner", str(tiny_blip_dir), "--json"]) == 0
    out = capsys.readouterr()
    results = json.loads(out.out)
    assert results[0]["path"] == "photos/page.jpg" and results[0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert f"searched as: {image_pipeline.captioner.caption(query)}" in out.err


def test_zero_shot_takes_images(image_index, image_pipeline, tiny_model_dir, tiny_blip_dir, tmp_path):
    from clamp3.evaluate.zeroshot import encode_classes

    media, _ = image_index
    images = sorted(str(p) for p in media.rglob("*") if p.suffix in (".png", ".jpg", ".jpeg", ".webp"))
    labels = ["sheet music", "a photo of a violin"]
    report = tmp_path / "zs.json"
    assert main(["zero-shot", *images, "--labels", ",".join(labels), "--model", str(tiny_model_dir),
                 "--captioner", str(tiny_blip_dir), "--json", str(report), "--no-progress"]) == 0  # fmt: skip
    predictions = json.loads(report.read_text())["predictions"]
    captions = [image_pipeline.captioner.caption(p) for p in images]
    expected = image_pipeline.encode_texts(captions) @ encode_classes(image_pipeline, labels).T
    for row, record in zip(expected, sorted(predictions, key=lambda r: r["path"])):
        assert record["label"] == labels[int(np.argmax(row))]
        assert record["top"][0]["score"] == pytest.approx(float(row.max()), abs=1e-5)


# ----------------------------------------------------------------------------- the service
@pytest.fixture(scope="module")
def client(image_index, image_pipeline):
    pytest.importorskip("fastapi")
    from serve_support import client_for

    from clamp3.serve.service import build_app
    from clamp3.serve.settings import LOCAL_HOSTS, Settings

    media, idx = image_index
    settings = Settings(allowed_hosts=LOCAL_HOSTS | {"testserver"}, max_image_pixels=100_000)
    app = build_app(idx, media, image_pipeline, settings)
    yield client_for(app)
    app.state.catalog.encoder.close()
    app.state.uploads.close()


def test_the_service_searches_with_an_uploaded_image(client, image_index, image_pipeline):
    media, _ = image_index
    data = (media / "web.webp").read_bytes()
    answer = client.post("/api/search/file", files={"file": ("my photo.webp", data, "image/webp")})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    caption = image_pipeline.captioner.caption(media / "web.webp")
    assert body["query"]["caption"] == caption and body["query"]["name"] == "my photo.webp"
    assert body["results"][0]["path"] == "web.webp"
    more = client.get(f"/api/uploads/{body['upload_id']}/similar", params={"offset": 1})
    assert more.status_code == 200 and more.json()["query"]["caption"] == caption


def test_the_service_refuses_badmake_images(client, tmp_path):
    big = write_image(tmp_path / "big.png", seed=9, size=(400, 300)).read_bytes()  # 0.12 MP > 0.1 MP cap
    small = write_image(tmp_path / "small.png", seed=9, size=(64, 64)).read_bytes()
    cut = small[: len(small) // 2]
    cases = {
        "big.png": (big, 422, "megapixels, over the limit"),
        "cut.png": (cut, 422, "truncated or corrupt"),
        "html.png": (b"<html><script>alert(1)</script></html>", 415, "does not look like a .png"),
        "empty.jpg": (b"", 415, "empty"),
    }
    for name, (data, status, reason) in cases.items():
        answer = client.post("/api/search/file", files={"file": (name, data, "image/png")})
        assert answer.status_code == status and reason in answer.json()["message"], (name, answer.text)
        assert "/tmp" not in answer.json()["message"]  # the client's name, never the server path


def test_caption_fields_are_optional_in_the_manifest_record():
    from clamp3.formats import ManifestRecord

    base = dict(path="a.png", npy="a.npy", modality="text", n_items=5, shape=(1, 8), sha256="0" * 64,
                size=3, mtime_ns=1, model="m", model_fingerprint="f", pooled=True, input_root="/r")  # fmt: skip
    image = ManifestRecord(**base, caption="a sheet of music", captioner="blip")
    assert ManifestRecord.from_json(image.to_json(), "m.jsonl") == image
    plain = ManifestRecord(**base).to_json()
    assert "caption" not in plain and "captioner" not in plain  # other records are unchanged
    assert ManifestRecord.from_json(plain, "m.jsonl").caption is None

"""The captioner (issue 20): the official BLIP call on a tiny random BLIP, image checks, loading."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
import torch
from conftest import CAPTION_WORDS, write_image

from clamp3.captioning import Captioner, read_image
from clamp3.utils.errors import CheckpointError, InputError

# A toy BLIP's 20 decoding steps are tiny ops: on two busy cores one thread is ~15x faster.
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def captioner(tiny_blip_dir) -> Captioner:
    return Captioner(tiny_blip_dir)


@pytest.fixture(scope="module")
def official(tiny_blip_dir):
    """The official ``inference/image_captioning.py`` written out with the same transformers
    classes (the processor as BlipProcessor.from_pretrained builds it here): path -> caption."""
    from PIL import Image
    from transformers import BlipForConditionalGeneration, BlipProcessor

    processor = BlipProcessor.from_pretrained(tiny_blip_dir)
    model = BlipForConditionalGeneration.from_pretrained(tiny_blip_dir)

    def caption(path: Path) -> str:
        inputs = processor(Image.open(path).convert("RGB"), return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**inputs)
        return processor.decode(out[0], skip_special_tokens=True)

    return caption


@pytest.mark.filterwarnings("ignore:Using the model-agnostic default")  # in official()
@pytest.mark.parametrize("name", ["scan.png", "photo.jpg", "photo.jpeg", "page.webp"])
def test_caption_is_the_official_blip_caption(captioner, official, tmp_path, name):
    path = write_image(tmp_path / name, seed=len(name))
    caption = captioner.caption(path)
    assert caption and set(caption.split()) <= set(CAPTION_WORDS)
    assert caption == official(path)
    assert captioner.caption(path.read_bytes(), name="upload") == caption  # bytes read the same


def test_nothing_loads_before_an_image_is_captioned(tiny_blip_dir, tmp_path):
    captioner = Captioner(tiny_blip_dir)
    assert not captioner.loaded
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(InputError):
        captioner.caption(empty)
    assert not captioner.loaded  # a bad image is refused before the model is needed
    captioner.caption(write_image(tmp_path / "ok.png", seed=1))
    assert captioner.loaded


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` pixels, with a few bytes of data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def _bad_images(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = write_image(tmp_path / "good.png", seed=3, size=(64, 64)).read_bytes()
    jpeg = write_image(tmp_path / "good.jpg", seed=4, size=(64, 64)).read_bytes()
    gif = write_image(tmp_path / "anim.gif", seed=5).read_bytes()
    files = {
        "empty.png": (b"", "empty"),
        "notes.jpg": (b"X:1\nT:not an image\nK:C\nCDEF|\n", "not a PNG, JPEG or WebP"),
        "cut.png": (good[: len(good) // 2], "truncated or corrupt"),
        "cut.jpg": (jpeg[: len(jpeg) // 2], "truncated or corrupt"),
        "gif.png": (gif, "not a PNG, JPEG or WebP"),  # a decoder we do not open
        "bomb.png": (_png_header(12_000, 12_000), "megapixels, over the limit"),
        "huge.png": (_png_header(60_000, 60_000), "too large"),  # Pillow's own guard
    }
    out = {}
    for name, (data, reason) in files.items():
        (tmp_path / name).write_bytes(data)
        out[name] = (tmp_path / name, reason)
    return out


def test_bad_images_are_input_errors_naming_file_and_reason(tmp_path):
    for name, (path, reason) in _bad_images(tmp_path).items():
        with pytest.raises(InputError) as info:
            read_image(path)
        assert info.value.path == str(path), name
        assert reason in info.value.reason, (name, info.value.reason)
        with pytest.raises(InputError) as info:
            read_image(path.read_bytes(), name="client.png")
        assert info.value.path == "client.png" and reason in info.value.reason, name
    with pytest.raises(InputError, match="no such file"):
        read_image(tmp_path / "missing.png")


def test_pixel_cap_is_checked_before_decoding(tmp_path):
    path = write_image(tmp_path / "wide.png", seed=6, size=(300, 200))
    assert read_image(path, max_pixels=60_000).size == (300, 200)
    with pytest.raises(InputError, match=r"300 x 200 = 0\.06 megapixels, over the limit of 0\.01"):
        read_image(path, max_pixels=10_000)
    image = read_image(write_image(tmp_path / "grey.png", seed=7, fmt="PNG"))
    assert image.mode == "RGB"


def test_offline_and_not_cached_names_the_model_and_the_download(monkeypatch):
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True, raising=False)
    captioner = Captioner("nobody-here/blip-not-cached")
    for _ in range(2):  # the second image gets the same answer without a second attempt
        with pytest.raises(CheckpointError) as info:
            captioner.load()
        message = str(info.value)
        assert "'nobody-here/blip-not-cached'" in message and "HF_HUB_OFFLINE is set" in message
        assert "`hf download nobody-here/blip-not-cached`" in message and "--captioner DIR" in message


def test_a_folder_that_is_no_model_is_a_checkpoint_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match=str(tmp_path)):
        Captioner(tmp_path).load()


def test_an_unchanged_file_is_captioned_once(captioner, tmp_path, monkeypatch):
    import os

    import clamp3.captioning as captioning

    path = write_image(tmp_path / "again.png", seed=11)
    first = captioner.caption(path)

    def no_second_generation(*args):
        raise AssertionError("captioned twice")

    monkeypatch.setattr(captioning, "_generate", no_second_generation)
    assert captioner.caption(str(path)) == first
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # changed: caption afresh
    with pytest.raises(AssertionError, match="captioned twice"):
        captioner.caption(path)

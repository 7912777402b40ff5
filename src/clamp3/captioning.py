"""Image inputs: a photo or scan (of a score, a cover, a concert) -> one caption -> text.

The official ``clamp3_search.py`` takes images this way: ``inference/image_captioning.py``
captions each image with BLIP (``Salesforce/blip-image-captioning-base``, ``generate()`` with
the model's default settings, one caption per image) and the caption is then embedded by the
text tower. :class:`Captioner` does the same with the same classes
(``BlipForConditionalGeneration`` + ``BlipProcessor``, PIL preprocessing as in the official
transformers 4.40), and loads any other image-to-text model transformers' auto classes know by
hub name or directory. Nothing is loaded until the first image is captioned.

:func:`read_image` is the one gate every image passes: the pixel count is read from the header
and capped *before* any pixel is decoded (a 100-kB PNG can declare 50,000 x 50,000 pixels, a
decompression bomb), and every failure (empty, truncated, not an image, too large) is an
``InputError`` naming the file and the reason.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clamp3.inputs import join_text_lines, not_a_file
from clamp3.utils.errors import CheckpointError, InputError
from clamp3.utils.extras import optional_module

if TYPE_CHECKING:
    from PIL.Image import Image

DEFAULT_CAPTIONER = "Salesforce/blip-image-captioning-base"
# A 600-dpi scan of an A3 page is ~70 megapixels; BLIP sees 384 x 384 of it anyway. Pillow's
# own bomb guard refuses images over ~179 MP outright, whatever this cap says.
DEFAULT_MAX_PIXELS = 100_000_000
# The decoders Pillow may try (its JPEG one also opens phones' multi-picture JPEGs); everything
# else (TIFF, PSD, EPS through Ghostscript ...) is refused before its parser runs.
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")
ImageSource = str | os.PathLike | bytes


def read_image(
    source: ImageSource, name: str | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> Image:
    """A PNG, JPEG or WebP file (a path, or its bytes) -> a decoded RGB ``PIL.Image``.

    ``name`` is how the image is named in errors (default: the path, or ``"the image"``).
    ``max_pixels`` caps width x height, checked from the header before decoding (``None``: no
    cap of ours). Raises ``InputError`` for a missing, empty, unrecognised, over-sized,
    truncated or corrupt image.
    """
    PILImage = _pillow()
    label = name or (str(source) if not isinstance(source, bytes) else "the image")
    if isinstance(source, bytes):
        stream: Any = io.BytesIO(source)
        size = len(source)
    else:
        stream = Path(source)
        try:
            size = stream.stat().st_size
        except OSError as exc:
            if not stream.exists():
                raise InputError(label, not_a_file(stream).reason) from None
            raise InputError(label, f"cannot read ({exc})") from None
    if size == 0:
        raise InputError(label, "the image file is empty (0 bytes)")
    with warnings.catch_warnings():
        # Our own cap decides below; Pillow's warning for 89-179 MP images would only be noise.
        warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
        try:
            image = PILImage.open(stream, formats=IMAGE_FORMATS)  # reads the header only
        except PILImage.UnidentifiedImageError:
            raise InputError(label, "not a PNG, JPEG or WebP image (its content is not recognised)") from None
        except PILImage.DecompressionBombError as exc:
            raise InputError(label, f"the image is too large to decode ({exc})") from None
        except OSError as exc:
            raise InputError(label, f"cannot read the image ({exc})") from None
        with image:
            return _decode(image, label, max_pixels)


def _pillow() -> Any:
    """``PIL.Image``, or an ``ImportError`` saying which extra brings it."""
    return optional_module("PIL.Image", "image inputs need Pillow", "image")


def _decode(image: Image, label: str, max_pixels: int | None) -> Image:
    width, height = image.size
    if width <= 0 or height <= 0:
        raise InputError(label, f"the image has no pixels ({width} x {height})")
    if max_pixels is not None and width * height > max_pixels:
        raise InputError(
            label,
            f"the image is {width} x {height} = {width * height / 1e6:.3g} megapixels, over the limit "
            f"of {max_pixels / 1e6:.3g} (a decompression bomb, or a needlessly fine scan: downscale it)",
        )
    try:
        image.load()
        return image.convert("RGB")  # as the official captioner: Image.open(path).convert("RGB")
    except Exception as exc:  # decoders raise OSError, SyntaxError, ValueError, zlib errors ...
        from clamp3.utils.reasons import describe_exception

        raise InputError(label, f"truncated or corrupt image ({describe_exception(exc)})") from None


class Captioner:
    """One caption per image with an image-to-text model, loaded on first use; thread-safe.

    ``name_or_dir`` is a hub id (default: the official BLIP) or a local model directory.
    ``device`` is where the model runs (default CPU; it stays float32, as in the official
    captioner). ``max_pixels`` is the cap :func:`read_image` applies to files and bytes.
    A model that cannot be loaded raises ``CheckpointError`` (offline and not cached: what to
    download and how); the failure is remembered, so a folder of images reports it once
    instead of retrying the hub for every image. The captions of the last ``MEMO_SIZE`` files
    are remembered (by path, size and modification time), so asking again costs nothing.
    """

    MEMO_SIZE = 64

    def __init__(
        self,
        name_or_dir: str | os.PathLike = DEFAULT_CAPTIONER,
        device: str | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ):
        self.name = str(name_or_dir)
        self.device = device or "cpu"
        self.max_pixels = max_pixels
        self._parts: tuple[Any, Any] | None = None  # (processor, model)
        self._failure: CheckpointError | None = None
        self._lock = threading.Lock()
        self._memo: OrderedDict[tuple[str, int, int], str] = OrderedDict()

    def __repr__(self) -> str:
        return f"Captioner({self.name!r}, device={self.device!r}, loaded={self.loaded})"

    @property
    def loaded(self) -> bool:
        return self._parts is not None

    def to(self, device: str) -> Captioner:
        """Run on ``device`` from now on (moves the model if it is loaded)."""
        with self._lock:
            self.device = str(device)
            if self._parts is not None:
                self._parts[1].to(self.device)
            self._memo.clear()  # another device may round differently: caption afresh
        return self

    def load(self) -> Captioner:
        """Load the processor and model now (idempotent). Raises ``CheckpointError``."""
        with self._lock:
            self._ensure_loaded()
        return self

    def caption(self, source: ImageSource | Image, name: str | None = None) -> str:
        """One image (a path, its bytes, or a ``PIL.Image``) -> its caption.

        Raises ``InputError`` for a bad image or an empty caption (``name`` names the image),
        ``CheckpointError`` when the model cannot be loaded.
        """
        key = _file_key(source)
        with self._lock:
            known = self._memo.get(key) if key is not None else None
        if known is not None:
            return known
        image = source if isinstance(source, _pillow().Image) else read_image(source, name, self.max_pixels)
        with self._lock:  # one generation at a time: the model is shared
            processor, model = self._ensure_loaded()
            text = _generate(processor, model, image.convert("RGB"), self.device)
            # As the official text pipeline reads the caption's .txt file back (one line, normally).
            caption = join_text_lines(text.split("\n"))
            if caption.strip() and key is not None:
                self._memo[key] = caption
                while len(self._memo) > self.MEMO_SIZE:
                    self._memo.popitem(last=False)
        if not caption.strip():
            raise InputError(name or _label(source), f"the captioner {self.name} produced an empty caption")
        return caption

    def _ensure_loaded(self) -> tuple[Any, Any]:
        if self._parts is None:
            if self._failure is not None:
                raise self._failure
            try:
                processor, model = load_captioner(self.name)
            except CheckpointError as exc:
                self._failure = exc
                raise
            self._parts = (processor, model.to(self.device))
        return self._parts


def _file_key(source: object) -> tuple[str, int, int] | None:
    """(real path, size, mtime) of an existing image file; ``None`` for bytes, images, missing files."""
    if not isinstance(source, (str, os.PathLike)):
        return None
    try:
        stat = os.stat(source)
    except OSError:
        return None
    return os.path.realpath(source), stat.st_size, stat.st_mtime_ns


def _label(source: object) -> str:
    return str(source) if isinstance(source, (str, os.PathLike)) else "the image"


def _generate(processor: Any, model: Any, image: Image, device: str) -> str:
    """The official call: ``processor(image)`` -> ``model.generate(**inputs)`` with the model's
    own generation settings -> the first sequence decoded without special tokens."""
    import torch

    inputs = processor(images=image, return_tensors="pt").to(device)
    with torch.inference_mode(), warnings.catch_warnings():
        # transformers >= 4.4x warns that the default length rule (20 new tokens) is in use;
        # that rule is exactly the official behaviour, so the warning says nothing to a user.
        warnings.filterwarnings("ignore", message="Using the model-agnostic default")
        output = model.generate(**inputs)
    return processor.decode(output[0], skip_special_tokens=True)


# ----------------------------------------------------------------------------- loading
def load_captioner(name_or_dir: str | os.PathLike) -> tuple[Any, Any]:
    """(processor, model in eval mode) of a local directory, or of a hub id through the
    Hugging Face cache (downloaded when the hub is reachable). Raises ``CheckpointError``."""
    path = Path(name_or_dir)
    if path.is_dir():
        try:
            return _load_parts(str(path), local_only=True)
        except Exception as exc:
            raise CheckpointError(
                f"{path}: not an image-to-text model folder transformers can load ({_reason(exc)})"
            ) from exc
    name = str(name_or_dir)
    try:
        return _load_parts(name, local_only=True)  # cache first: no network at all
    except OSError:
        pass  # not (completely) cached
    except Exception as exc:  # cached, but not something we can caption with
        raise CheckpointError(f"{name}: cannot be loaded as an image-to-text model ({_reason(exc)})") from exc
    from clamp3.hub import HUB_CACHE, offline_reason

    reason = offline_reason()  # one short probe, as for every hub file (clamp3.hub)
    if reason is None:
        try:
            return _load_parts(name, local_only=False)
        except Exception as exc:  # unknown repository, refused, connection broken: same advice
            reason = _reason(exc)
    raise CheckpointError(
        f"the image captioner {name!r} is not in the Hugging Face cache and could not be downloaded "
        f"({reason}). On a connected machine run `hf download {name}` and copy its cache ({HUB_CACHE}) "
        f"here, or put the files of https://huggingface.co/{name} in a folder and pass that folder "
        f"(`--captioner DIR`, `captioner=` in Python)."
    )


def _reason(exc: BaseException) -> str:
    from clamp3.utils.reasons import describe_exception

    return describe_exception(exc).splitlines()[0][:300]


def _load_parts(source: str, local_only: bool) -> tuple[Any, Any]:
    from transformers import AutoConfig

    with _quiet_transformers():
        config = AutoConfig.from_pretrained(source, local_files_only=local_only)
        loader = _load_blip if config.model_type == "blip" else _load_auto
        processor, model = loader(source, local_only)
    return processor, model.eval()


def _load_blip(source: str, local_only: bool) -> tuple[Any, Any]:
    """BLIP as the official code loads it, with the PIL image processor (transformers 5 would
    pick its torchvision variant when installed, whose resizing differs slightly)."""
    from transformers import AutoTokenizer, BlipForConditionalGeneration, BlipProcessor

    try:
        from transformers import BlipImageProcessorPil as ImageProcessor  # transformers >= 5
    except ImportError:  # transformers 4.x: BlipImageProcessor is the PIL one
        from transformers import BlipImageProcessor as ImageProcessor

    image_processor = ImageProcessor.from_pretrained(source, local_files_only=local_only)
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
    processor = BlipProcessor(image_processor=image_processor, tokenizer=tokenizer)
    model = BlipForConditionalGeneration.from_pretrained(source, local_files_only=local_only)
    return processor, model


def _load_auto(source: str, local_only: bool) -> tuple[Any, Any]:
    """Another image-to-text model (GIT, BLIP-2, Florence ...) through the auto classes."""
    import transformers
    from transformers import AutoProcessor

    auto: Callable[..., Any] | None = getattr(transformers, "AutoModelForImageTextToText", None)
    if auto is None:  # transformers < 4.46
        auto = transformers.AutoModelForVision2Seq
    processor = AutoProcessor.from_pretrained(source, local_files_only=local_only)
    model = auto.from_pretrained(source, local_files_only=local_only)
    return processor, model


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """No "Loading weights" progress bar while the captioner loads (it would land between the
    per-file lines of ``clamp3 embed``); the previous setting is restored."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()

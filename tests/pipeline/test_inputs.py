"""One input table and one normaliser: every caller classifies files and scales vectors alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clamp3.inputs import KINDS, PREPARED_KINDS, extensions, is_supported, kind_of, modality_of
from clamp3.utils.errors import InputError
from clamp3.utils.vectors import NORM_FLOOR, l2_normalize

NAMES = [
    "a.txt", "b.xml", "c.musicxml", "d.mxl", "e.abc", "f.mid", "g.MIDI", "h.mtf", "i.wav", "j.FLAC",
    "k.ogg", "l.mp3", "m.npy", "n.docx", "o.png", "p", "q.json",
]  # fmt: skip


def _tree(root: Path) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    for name in NAMES:
        (root / name).write_bytes(b"")
    return [root / name for name in NAMES]


def test_the_table_is_the_only_list_of_extensions():
    from clamp3.audio.io import AUDIO_EXTENSIONS, is_audio_file
    from clamp3.preprocess import SYMBOLIC_EXTENSIONS
    from clamp3.preprocess.abc import MUSICXML_EXTENSIONS
    from clamp3.preprocess.mtf import MIDI_EXTENSIONS
    from clamp3.train.records import MUSIC_EXTENSIONS as TRAINED
    from clamp3.train.records import modality_of as training_modality

    assert len(extensions()) == len(set(extensions()))  # an extension belongs to one kind
    assert set(SYMBOLIC_EXTENSIONS) == set(extensions("symbolic"))
    assert set(MUSICXML_EXTENSIONS) | set(MIDI_EXTENSIONS) | {".abc", ".mtf"} == set(SYMBOLIC_EXTENSIONS)
    assert set(AUDIO_EXTENSIONS) == {e for e in extensions("audio") if kind_of("x" + e).name == "recording"}
    assert set(TRAINED) == set(extensions(kinds=PREPARED_KINDS))  # curation asks unprepared_reason
    for name in NAMES:
        known = is_supported(name)
        assert is_audio_file(name) == (known and kind_of(name).name == "recording")
        expected = modality_of(name) if known and kind_of(name).name in PREPARED_KINDS else None
        assert training_modality(name) == expected, name
    with pytest.raises(ValueError):
        extensions(kinds=("no-such-kind",))


def test_embed_eval_uploads_and_the_pipeline_classify_alike(tmp_path, tiny_model_dir):
    from clamp3 import Clamp3Pipeline
    from clamp3.embed_folder import list_inputs
    from clamp3.evaluate.items import collect_files
    from clamp3.serve.errors import UnsupportedType
    from clamp3.serve.uploads import UPLOAD_KINDS, upload_suffix

    paths = _tree(tmp_path / "tree")
    supported = {p.name for p in paths if is_supported(p)}
    assert supported == {n for n in NAMES if Path(n).suffix.lower() in extensions()}
    assert {p.name for p in list_inputs(tmp_path / "tree").files} == supported
    assert {rel for _, rel in collect_files([tmp_path / "tree"])} == supported
    for modality in ("text", "symbolic", "audio"):
        found = {p.name for p in list_inputs(tmp_path / "tree", modality).files}
        assert found == {n for n in supported if modality_of(n) == modality}
    pipeline = Clamp3Pipeline.from_pretrained(tiny_model_dir)
    for path in paths:
        with pytest.raises(InputError) as info:  # every file here is empty, so each fails
            pipeline.encode_files([path])
        assert ("unsupported file type" in info.value.reason) == (path.name not in supported), path.name
        if path.name in supported:
            with pytest.raises(InputError) as other:  # forcing another modality is refused
                wrong = "text" if modality_of(path) != "text" else "audio"
                pipeline.prepare_file(path, wrong)
            assert modality_of(path) in other.value.reason
        uploadable = path.name in supported and kind_of(path).name in UPLOAD_KINDS
        if uploadable:
            assert upload_suffix(path.name) == path.suffix.lower()
        else:
            with pytest.raises(UnsupportedType):
                upload_suffix(path.name)
    assert {k.name for k in KINDS if k.modality in ("symbolic", "audio")} - set(UPLOAD_KINDS) == {"features"}


def test_the_service_names_and_types_files_by_the_table():
    from clamp3.serve.media import CONTENT_TYPES, PAGE_KINDS, media_kind

    # Subsets: a kind added to the table is served as "other" until the page learns to show it.
    assert set(PAGE_KINDS) <= {kind.name for kind in KINDS}
    assert set(CONTENT_TYPES) <= set(extensions())
    for name in NAMES:
        expected = PAGE_KINDS[kind_of(name).name] if is_supported(name) else "other"
        assert media_kind(name) == expected, name


def test_one_normaliser_with_one_floor_everywhere():
    """A vector whose norm is below the floor comes out with norm |v| / floor from every caller
    (three different epsilons once gave three different answers)."""
    from clamp3.curate.embeddings import unit_float32
    from clamp3.evaluate.genscore import pair_cosines
    from clamp3.evaluate.metrics import unit_rows
    from clamp3.evaluate.zeroshot import zero_shot_scores
    from clamp3.index.search_index import normalize

    tiny = np.zeros((1, 4))
    tiny[0, 0] = NORM_FLOOR / 10  # norm 1e-13
    unit = np.array([[1.0, 0.0, 0.0, 0.0]])
    expected = tiny / NORM_FLOOR  # (0.1, 0, 0, 0)
    for fn in (l2_normalize, normalize, unit_rows, unit_float32):
        np.testing.assert_allclose(fn(tiny), expected, rtol=1e-6, err_msg=fn.__name__)
        np.testing.assert_array_equal(fn(np.zeros((1, 4))), np.zeros((1, 4)))
    np.testing.assert_allclose(pair_cosines(tiny, tiny), [0.01], rtol=1e-6)
    np.testing.assert_allclose(zero_shot_scores(tiny, unit), [[0.1]], rtol=1e-6)
    np.testing.assert_allclose(l2_normalize(3 * unit[0]), unit[0])
    assert l2_normalize(unit).dtype == np.float32 and unit_rows(unit).dtype == np.float64


def test_no_other_l2_normaliser_in_the_package():
    """Only clamp3/utils/vectors.py computes norms to divide by (the index's zero-row check
    and the trainer's torch ``F.normalize``, whose default floor is the same 1e-12, aside)."""
    import clamp3

    root = Path(clamp3.__file__).parent
    found = []
    for path in root.rglob("*.py"):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "linalg.norm(" in line and path.relative_to(root).as_posix() not in (
                "utils/vectors.py",
                "index/search_index.py",  # norm > 0 check of stored rows, not a division
            ):
                found.append(f"{path.relative_to(root)}:{number}")
    assert not found, found


TUNE = "X:1\nL:1/8\nM:4/4\nK:C\nCDEF GABc|\n"  # hand-written: patched as given by both
TEXT = "Ein Wiegenlied\nein Wiegenlied\n"


def _text_variants(tmp_path: Path, suffix: str, text: str) -> dict[str, Path]:
    """The same text as editors write it: plain UTF-8, with a byte-order mark, UTF-16 (both byte
    orders, with a mark), Windows and old-Mac line ends."""
    encoded = {
        "plain": text.encode(),
        "bom": b"\xef\xbb\xbf" + text.encode(),
        "utf16le": text.encode("utf-16"),  # with a mark, in the machine's order
        "utf16be": b"\xfe\xff" + text.encode("utf-16-be"),
        "crlf": text.replace("\n", "\r\n").encode(),
        "cr": text.replace("\n", "\r").encode(),
    }
    for name, data in encoded.items():
        (tmp_path / f"{name}{suffix}").write_bytes(data)
    return {name: tmp_path / f"{name}{suffix}" for name in encoded}


def test_one_text_reader_takes_marks_utf16_and_line_ends_alike_everywhere(tmp_path):
    """A byte-order mark, UTF-16 or CRLF never changes what is embedded, converted or trained on:
    the pipeline's .txt, load_symbolic's .abc/.mtf, convert and training all read through
    clamp3.inputs.read_input_text (four readers once disagreed: a mark opened the first patch)."""
    from clamp3.inputs import read_input_text, read_text_file
    from clamp3.preprocess import load_symbolic
    from clamp3.preprocess.bulk import Job, convert_file
    from clamp3.train.data import file_patches, load_patchify

    for path in _text_variants(tmp_path, ".txt", TEXT).values():
        assert read_input_text(path) == TEXT, path.name
        assert read_text_file(path) == "Ein Wiegenlied</s>ein Wiegenlied", path.name
    (tmp_path / "reference.abc").write_text(TUNE, encoding="utf-8")
    expected = load_symbolic(tmp_path / "reference.abc")
    for name, path in _text_variants(tmp_path, ".abc", TUNE).items():
        np.testing.assert_array_equal(load_symbolic(path), expected, err_msg=name)
        np.testing.assert_array_equal(file_patches(path, True, load_patchify()), expected, err_msg=name)
        out = tmp_path / f"{name}.xml"
        assert convert_file(Job(path, (("musicxml", out),)))[1] is None, name
    plain = (tmp_path / "plain.xml").read_text()
    assert all((tmp_path / f"{n}.xml").read_text() == plain for n in ("bom", "utf16le", "crlf", "cr"))


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty file"),
        (b"\xef\xbb\xbf", "empty file"),
        (b" \n\t\r\n", "empty file (only whitespace)"),
        ("  \n".encode("utf-16"), "empty file (only whitespace)"),
        (b"X:1\nK:C\n\x00\x00CDE", "binary data, not text (a NUL byte at offset 8)"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary data, not text (a NUL byte at offset 8)"),
        (b"X:1\nT:caf\xe9\nK:C\n", "not UTF-8 text (invalid continuation byte at offset 9)"),
        (b"\xff\xfe" + b"\x00\xd8", "not UTF-16 text"),  # a lone surrogate
    ],
)
def test_a_text_input_that_is_no_text_is_refused_alike_everywhere(tmp_path, data, reason):
    from clamp3.inputs import read_input_text
    from clamp3.preprocess import load_symbolic
    from clamp3.preprocess.bulk import Job, convert_file
    from clamp3.train.screening import ReadRules, file_problem

    path = tmp_path / "bad.abc"
    path.write_bytes(data)
    for read in (read_input_text, load_symbolic):
        with pytest.raises(InputError) as info:
            read(path)
        assert info.value.path == str(path) and info.value.reason.startswith(reason), read
    assert convert_file(Job(path, (("musicxml", tmp_path / "bad.xml"),)))[1].startswith(reason)
    assert file_problem(str(path), ReadRules(strip_default_length=True, feature_dim=32)).startswith(reason)
    assert not (tmp_path / "bad.xml").exists()

"""load_audio: every supported container, channel mixing, and a clear error for each bad file."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from clamp3.audio import load_audio, resample
from clamp3.utils.errors import InputError


def _tone(seconds: float, sr: int, channels: int) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    chans = [0.4 * np.sin(2 * np.pi * (220 * (c + 1)) * t + c) for c in range(channels)]
    return np.stack(chans, axis=1).astype(np.float32)


def test_wav_stereo_is_channel_mean_then_resampled(tmp_path):
    x = _tone(1.5, 44100, 2)
    path = tmp_path / "a.wav"
    sf.write(path, x, 44100, subtype="FLOAT")
    expected = resample(x.mean(axis=1, dtype=np.float32), 44100, 24000)
    wave = load_audio(path)
    assert wave.dtype == np.float32 and wave.ndim == 1 and len(wave) == 36000
    np.testing.assert_allclose(wave, expected, rtol=0, atol=1e-6)


def test_pcm16_decodes_as_int16_over_32768(tmp_path):
    ints = (np.arange(-2000, 22000, dtype=np.int64) % 65536 - 32768).astype(np.int16)
    path = tmp_path / "a.wav"
    sf.write(path, ints, 24000, subtype="PCM_16")
    np.testing.assert_array_equal(load_audio(path), ints.astype(np.float32) / 32768)


@pytest.mark.parametrize(
    ("ext", "fmt", "atol"), [("flac", "FLAC", 1e-4), ("ogg", "OGG", 0.05), ("mp3", "MP3", 0.05)]
)
def test_compressed_formats_decode_close_to_the_source(tmp_path, ext, fmt, atol):
    x = _tone(2.0, 48000, 2)
    path = tmp_path / f"a.{ext}"
    sf.write(path, x, 48000, format=fmt)
    wave = load_audio(path)
    reference = resample(x.mean(axis=1, dtype=np.float32), 48000, 24000)
    # Lossy codecs add an encoder delay (mp3) and coding noise: compare the level and the
    # best-aligned waveform rather than sample by sample.
    assert abs(len(wave) - len(reference)) <= 2400
    n = min(len(wave), len(reference)) - 4000
    lags = range(0, 2400)
    errors = [np.abs(wave[lag : lag + n] - reference[:n]).mean() for lag in lags]
    assert min(errors) < atol
    assert abs(np.std(wave) - np.std(reference)) < 0.02


def test_extension_is_case_insensitive(tmp_path):
    path = tmp_path / "LOUD.WAV"
    sf.write(path, _tone(1.0, 24000, 1), 24000)
    assert load_audio(path).shape == (24000,)


@pytest.mark.parametrize(
    ("name", "payload", "reason"),
    [
        ("notes.txt", b"hello", "unsupported audio format '.txt'"),
        ("song.aiff", b"FORM", "unsupported audio format '.aiff'"),
        ("garbage.wav", b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk", "cannot decode audio"),
        ("random.mp3", bytes(range(256)) * 4, "cannot decode audio"),
        # libsndfile calls this existing file one that "does not exist or is not a regular file"
        ("tagged.mp3", b"ID3garbage" * 10, r"cannot decode audio \(its content is not MP3 that libsndfile"),
    ],
)
def test_bad_files_raise_input_error_naming_the_file(tmp_path, name, payload, reason):
    path = tmp_path / name
    path.write_bytes(payload)
    with pytest.raises(InputError, match=reason) as err:
        load_audio(path)
    assert err.value.path == str(path)
    assert str(path) not in err.value.reason and "does not exist" not in err.value.reason  # named once


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_audio(tmp_path / "absent.wav")


def test_truncated_flac_is_reported(tmp_path):
    path = tmp_path / "t.flac"
    sf.write(path, _tone(3.0, 44100, 2), 44100, format="FLAC")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cannot decode|truncated"):
        load_audio(path)


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT"])
def test_truncated_wav_is_reported(tmp_path, subtype):
    """libsndfile decodes what is left of a cut-off WAV without a word; the header says more."""
    from clamp3.audio.io import wav_shortfall

    path = tmp_path / "t.wav"
    sf.write(path, _tone(3.0, 44100, 2), 44100, subtype=subtype)
    whole = path.read_bytes()
    assert wav_shortfall(path) is None
    path.write_bytes(whole[: len(whole) // 2])
    declared, present = wav_shortfall(path)
    header = len(whole) - declared  # 44 bytes for PCM; float WAVs carry a "fact" chunk as well
    assert 44 <= header < 100 and present == len(whole) // 2 - header
    with pytest.raises(InputError) as caught:
        load_audio(path)
    assert caught.value.path == str(path) and caught.value.reason.startswith("truncated: the header announces")
    path.write_bytes(whole[:-4])  # one stereo 16-bit frame short: within the 1 % a writer may round
    assert wav_shortfall(path) is None


def test_wav_chunks_before_the_data_and_streaming_placeholders(tmp_path):
    from clamp3.audio.io import wav_shortfall

    samples = (np.arange(2400) % 200 - 100).astype("<i2").tobytes()
    fmt = b"fmt " + (16).to_bytes(4, "little") + bytes.fromhex("0100 0100 c05d0000 80bb0000 0200 1000")
    odd = b"LIST" + (3).to_bytes(4, "little") + b"abc\0"  # an odd-length chunk, padded to even
    for declared, cut, expected in [
        (len(samples), 0, None),
        (len(samples), 1000, (len(samples), len(samples) - 1000)),
        (0xFFFFFFFF, 1000, None),  # a writer that never came back to fill the sizes in
        (0, 0, None),
    ]:
        data = b"data" + declared.to_bytes(4, "little") + samples[: len(samples) - cut]
        body = b"WAVE" + fmt + odd + data
        path = tmp_path / "w.wav"
        path.write_bytes(b"RIFF" + len(body).to_bytes(4, "little") + body)
        assert wav_shortfall(path) == expected
    (tmp_path / "rf64.wav").write_bytes(b"RF64" + bytes(40))
    assert wav_shortfall(tmp_path / "rf64.wav") is None


def test_truncated_mp3_is_reported(tmp_path):
    path = tmp_path / "t.mp3"
    sf.write(path, _tone(3.0, 44100, 2), 44100, format="MP3")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"truncated or corrupt|cannot decode"):
        load_audio(path)


def test_empty_and_non_finite_files(tmp_path):
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0, 1), np.float32), 24000, subtype="FLOAT")
    with pytest.raises(InputError, match="no audio samples"):
        load_audio(empty)
    nan = tmp_path / "nan.wav"
    x = _tone(1.2, 24000, 1)
    x[100] = np.nan
    sf.write(nan, x, 24000, subtype="FLOAT")
    with pytest.raises(InputError, match="NaN or infinite"):
        load_audio(nan)

"""WAV files as audio editors export them (32-bit float, WAVE_FORMAT_EXTENSIBLE, FLAC) are read, and
broken headers are refused in one line before anything is allocated from them."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import soundfile as sf

from audio_helpers import write_wav
from conftest import real_data_dir
from diptych.data import audio
from diptych.data.audio import FSDD_FRONTEND, feature_stats, wav_features
from diptych.errors import DataError

FORMATS = {
    "float32": ("WAV", "FLOAT"),
    "extensible-pcm16": ("WAVEX", "PCM_16"),
    "extensible-float32": ("WAVEX", "FLOAT"),
    "flac": ("FLAC", "PCM_16"),
    "pcm24": ("WAV", "PCM_24"),
}


@pytest.fixture(scope="module")
def digit(tmp_path_factory):
    """A real FSDD recording (16-bit PCM) and the same samples in each other format."""
    src = real_data_dir("fsdd") / "recordings" / "7_jackson_32.wav"
    x, rate = sf.read(src, dtype="int16")
    folder = tmp_path_factory.mktemp("formats")
    out = {"pcm16": src}
    for name, (fmt, subtype) in FORMATS.items():
        data = x.astype(np.float32) / 2**15 if subtype == "FLOAT" else x  # what an editor's float export holds
        sf.write(folder / f"{name}.{'flac' if fmt == 'FLAC' else 'wav'}", data, rate, format=fmt, subtype=subtype)
        out[name] = folder / f"{name}.{'flac' if fmt == 'FLAC' else 'wav'}"
    return out


def test_header_tags_are_the_formats_editors_write(digit):
    assert struct.unpack("<H", digit["float32"].read_bytes()[20:22])[0] == 3  # WAVE_FORMAT_IEEE_FLOAT
    assert struct.unpack("<H", digit["extensible-pcm16"].read_bytes()[20:22])[0] == 0xFFFE


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_format_gives_the_features_of_the_16_bit_original(digit, name):
    ref = wav_features(digit["pcm16"], FSDD_FRONTEND)  # (M, T)
    np.testing.assert_array_equal(wav_features(digit[name], FSDD_FRONTEND), ref)  # bit for bit: lossless


def test_every_format_transcribes_to_the_same_digit(digit, tmp_path):
    from diptych.commands.transcribe import transcribe
    from diptych.tasks import TASKS
    from diptych.weights import save_weights

    rng = np.random.default_rng(0)
    params = {k: rng.normal(0, 0.05, s).astype(np.float32) for k, s in TASKS["fsdd-cnn"].model.param_shapes().items()}
    stats = feature_stats(wav_features(digit["pcm16"], FSDD_FRONTEND)[None], FSDD_FRONTEND)
    features = {"frontend": FSDD_FRONTEND.__dict__, "split": "official", **{k: v.tolist() for k, v in stats.items()}}
    save_weights(params, tmp_path / "w.safetensors", task="fsdd-cnn", features=features)
    rows = transcribe("fsdd-cnn", "torch", str(tmp_path / "w.safetensors"), [str(p) for p in digit.values()])
    assert len({r["digit"] for r in rows}) == 1, rows  # features are equal bit for bit (above); the batch
    np.testing.assert_allclose([r["probability"] for r in rows], rows[0]["probability"], rtol=1e-6)  # BLAS rounding


def _wav(fmt: bytes, data: bytes, extra: bytes = b"") -> bytes:
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _fmt(tag=1, channels=1, rate=8000, bits=16, block=None) -> bytes:
    block = channels * bits // 8 if block is None else block
    return struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)


SAMPLES = np.zeros(800, "<i2").tobytes()


@pytest.mark.parametrize(
    "raw,needle",
    [
        (_wav(_fmt(), SAMPLES)[:-100], "data chunk says 1,600 bytes but only 1,500 follow"),
        (_wav(_fmt(), SAMPLES)[:-1], "truncated"),
        (_wav(_fmt(), SAMPLES[:-1]), "ends in the middle of a sample"),
        (_wav(_fmt(rate=0), SAMPLES), "sample rate of 0 Hz"),
        (_wav(_fmt(rate=1), SAMPLES), "sample rate of 1 Hz"),
        (_wav(_fmt(rate=2**31 - 1), SAMPLES), "sample rate of 2,147,483,647 Hz"),
        (_wav(_fmt(channels=0), SAMPLES), "0 channels"),
        (_wav(_fmt(channels=65535, block=2), SAMPLES), "65535 channels"),
        (_wav(_fmt(bits=12), SAMPLES), "12-bit PCM samples are not supported"),
        (_wav(_fmt(tag=2), SAMPLES), "sample format 0x2 is not PCM or IEEE float"),
        (_wav(_fmt(bits=16, block=3), SAMPLES), "block size 3"),
        (_wav(_fmt(), b""), "holds no samples"),
        (_wav(_fmt(), SAMPLES, extra=b"LIST" + struct.pack("<I", 10**9)), "chunk b'LIST' runs past the end"),
        (_wav(_fmt(tag=3, bits=32), np.full(400, np.nan, "<f4").tobytes()), "NaN or infinite samples"),
        (_wav(_fmt(tag=3, bits=32), np.full(400, 3e4, "<f4").tobytes()), "samples reach 3e\\+04 times full scale"),
        (b"RIFF\0\0\0\0WAVE", "no data chunk"),
        (b"fLaC" + b"\0" * 40, "cannot decode"),
    ],
)
def test_broken_headers_are_one_line(tmp_path, raw, needle):
    (tmp_path / "bad.wav").write_bytes(raw)
    with pytest.raises(DataError, match=needle) as e:
        audio.read_wav(tmp_path / "bad.wav", 8000)
    assert "\n" not in str(e.value) and str(tmp_path / "bad.wav") in str(e.value)


def test_decoded_length_is_capped(tmp_path, monkeypatch):
    monkeypatch.setattr(audio, "MAX_SAMPLES", 10_000)
    write_wav(tmp_path / "long.wav", np.zeros(6_000), rate=8000)
    assert len(audio.read_wav(tmp_path / "long.wav", 8000)) == 6_000
    with pytest.raises(DataError, match="more than diptych reads"):  # 6,000 x 2 channels
        audio.read_wav(write_wav(tmp_path / "st.wav", np.zeros((6_000, 2))), 8000)
    with pytest.raises(DataError, match="more than diptych reads"):  # 6,000 at 1 kHz -> 48,000 at 8 kHz
        audio.read_wav(write_wav(tmp_path / "slow.wav", np.zeros(6_000), rate=1000), 8000)


def test_odd_rates_resample_without_a_giant_filter(tmp_path):
    x = 0.5 * np.cos(2 * np.pi * 440 * np.arange(44101) / 44101)  # 1 s at 44,101 Hz: factors 8,000 / 44,101
    y = audio.read_wav(write_wav(tmp_path / "odd.wav", x, rate=44101), 8000)
    assert abs(len(y) - 8000) <= 1
    spectrum = np.abs(np.fft.rfft(y[:8000]))  # 1 Hz bins
    assert abs(int(spectrum.argmax()) - 440) <= 1 and abs(np.sqrt(np.mean(y[500:-500] ** 2)) - 0.5 / np.sqrt(2)) < 1e-3


@pytest.mark.parametrize("rate", [1081, 7999, 44101, 383800, 384000])
def test_resampled_length_is_within_a_twentieth_of_a_percent(rate):
    y = audio.resample(np.zeros(rate, np.float32), rate, 8000)  # 1 s
    assert abs(len(y) / 8000 - 1) <= 5e-4


def test_a_few_megabytes_of_audio_stay_within_a_small_memory_bound(tmp_path):
    """2 MB of 384 kHz stereo float: decoded, mixed, resampled to 8 kHz and turned into one image with
    under 40 MiB allocated (measured: 4 MiB; the whole `transcribe` of a 5 MB one peaked at 443 MB RSS, 374 MB of it
    the frameworks), because every allocation is bounded by the checked header."""
    import tracemalloc

    import scipy.signal  # noqa: F401  (imported outside the measurement)

    x = np.random.default_rng(0).uniform(-0.5, 0.5, (2 * 2**20 // 8, 2))  # 2 MB
    sf.write(tmp_path / "big.wav", x, 384000, subtype="FLOAT")
    tracemalloc.start()
    try:
        image = wav_features(tmp_path / "big.wav", FSDD_FRONTEND)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert image.shape == (32, 64) and peak < 40 * 2**20, peak / 2**20

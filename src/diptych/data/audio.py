"""The audio front end, in numpy: wav file -> fixed-length waveform -> log-mel spectrogram.

Maths, for a waveform ``x`` at ``sample_rate`` (brought to one speech level when ``level`` is set: that RMS in
dBFS over the frames :mod:`diptych.data.vad` calls speech) and padded or trimmed to ``num_samples``:

* frames ``x_t[n] = x[t * hop + n]`` for ``n < n_fft`` and ``t < frames`` (no centre padding);
* power spectrum ``P[t, k] = |sum_n w[n] x_t[n] exp(-2 pi i k n / n_fft)|^2`` with the periodic
  Hann window ``w[n] = 0.5 - 0.5 cos(2 pi n / n_fft)``, ``k = 0 .. n_fft/2``;
* mel energies ``E[m, t] = sum_k F[m, k] P[t, k]`` with triangular filters ``F`` evenly spaced on
  the HTK mel scale ``mel(f) = 2595 log10(1 + f / 700)``, each normalized to unit area in Hz
  (Slaney's normalization: peak ``2 / (f_right - f_left)``), so a band's energy does not grow
  with its width;
* log-mel ``L[m, t] = log(E[m, t] + floor)``; the floor keeps silence (zero padding) finite.

Dither (as Kaldi's front end does by default): Gaussian noise of ``dither`` rms (-60 dBFS) is added to
the padded waveform, seeded by its bytes so a file always gives the same image. Without it the zero
padding makes whole regions of the image exactly equal, and max-pool ties there are broken by
last-bit rounding that differs between PyTorch and XLA: the twins' conv gradients then differed by
4% on real batches (``diptych parity fsdd-cnn``), against 1e-6 with dither.

Decoding uses libsndfile (``soundfile``): WAV with 8/16/24/32-bit PCM or 32/64-bit float samples, plain
or WAVE_FORMAT_EXTENSIBLE, and FLAC, after a strict check of the header (:func:`check_wav_header`);
several channels are averaged to mono and other sample rates are resampled with
``scipy.signal.resample_poly``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import zlib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from diptych.errors import DataError


@dataclass(frozen=True)
class FrontEnd:
    """Front-end settings; ``key()`` names the feature cache, so changing any of them recomputes."""

    sample_rate: int = 8000
    n_fft: int = 256  # 32 ms at 8 kHz
    hop: int = 128  # 16 ms
    n_mels: int = 32
    frames: int = 64
    fmin: float = 0.0
    fmax: float = 4000.0
    floor: float = 1e-6
    dither: float = 1e-3
    level: float = 0.0  # speech brought to this RMS in dBFS before the features (speech_level); 0: as recorded
    cepstra: int = 0  # each frame's log-mel kept to its first `cepstra` cepstral terms (smooth_bands); 0: all
    trim: bool = False  # leading and trailing silence cut (diptych.data.vad) before the speech is centred
    # Over several recordings, not one (so not in key(): the per-recording cache stays valid):
    voice: bool = False  # each voice's mean spectrum moved to the training voices' average (shift_voices)
    views: bool = False  # predictions averaged over the image shifted a little in time and pitch (shifted_views)

    @property
    def num_samples(self) -> int:
        """Waveform length that gives exactly ``frames`` frames: ``(frames - 1) * hop + n_fft``."""
        return (self.frames - 1) * self.hop + self.n_fft

    def key(self) -> str:
        """Names one recording's features: the settings that act on the voice or the prediction do not count."""
        own = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("voice", "views")}
        return hashlib.sha1(json.dumps(own, sort_keys=True).encode()).hexdigest()[:12]


# FSDD's speakers were recorded 30 dB apart (theo's speech at -47 dBFS RMS, jackson's at -20). Brought to one
# level (FrontEnd(level=-20.0)) a quiet voice no longer sinks into the log floor (theo held out: 75.8% -> 89.6%,
# torch), but with it the official split fell under 98% (BENCHMARKS.md), so the default front end keeps the level.
FSDD_FRONTEND = FrontEnd()
# Settings absent from the metadata of weights trained before they existed, and what those weights were read with.
OPTIONAL_SETTINGS = {"level": 0.0, "cepstra": 0, "trim": False, "voice": False, "views": False}


# ----------------------------------------------------------------------------- decoding


MIN_RATE, MAX_RATE = 1_000, 384_000  # Hz: telephone speech to studio masters; anything else is a broken header
MAX_CHANNELS = 32
MAX_SAMPLES = 1 << 24  # decoded samples (frames x channels) read from one file: 64 MiB of float32
MAX_PEAK = 16.0  # float samples beyond 24 dB over full scale are not a recording: refused
MAX_POLY = 1_000  # largest up/down factor of the polyphase resampler (odd rates are approximated)
_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE
_GUID_TAIL = bytes.fromhex("000000001000800000aa00389b71")  # KSDATAFORMAT_SUBTYPE_* after the 2-byte code
_BITS = {_PCM: (8, 16, 24, 32), _FLOAT: (32, 64)}


def _convert_hint(sample_rate: int) -> str:
    return f"convert it, e.g. `ffmpeg -i IN -ac 1 -ar {sample_rate} -sample_fmt s16 OUT.wav`"


def check_wav_header(path: Path, sample_rate: int) -> tuple[int, int, int]:
    """Walk a RIFF/WAVE file's chunks without trusting them: ``(channels, rate, frames)``.

    Refuses (one line each) a chunk that runs past the end of the file, a data chunk that ends in the
    middle of a sample, a format other than PCM / IEEE float (plain or WAVE_FORMAT_EXTENSIBLE), a
    rate outside 1-384 kHz, more than 32 channels, and more than ``MAX_SAMPLES`` samples."""
    size = path.stat().st_size
    fmt = None
    with open(path, "rb") as f:
        riff = f.read(12)
        if len(riff) < 12 or riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
            raise DataError(f"{path}: not a PCM WAV file (no RIFF/WAVE header) nor FLAC; {_convert_hint(sample_rate)}")
        offset = 12
        for _ in range(10_000):  # a chunk list longer than this is not audio
            head = f.read(8)
            if len(head) < 8:
                break
            cid, csize = head[:4], int.from_bytes(head[4:], "little")
            left = size - offset - 8
            if cid == b"fmt ":
                if not 16 <= csize <= min(left, 1024):
                    raise DataError(
                        f"{path}: broken WAV header (fmt chunk of {csize} bytes); {_convert_hint(sample_rate)}"
                    )
                fmt = f.read(csize)
                f.seek(csize & 1, 1)  # chunks are padded to an even length
            elif cid == b"data":
                if fmt is None:
                    raise DataError(f"{path}: WAV data before its format chunk; {_convert_hint(sample_rate)}")
                if csize > left:
                    raise DataError(
                        f"{path}: the WAV data chunk says {csize:,} bytes but only {left:,} follow: "
                        f"the file is truncated; export or copy it again"
                    )
                return _check_format(path, fmt, csize, sample_rate)
            elif csize > left:
                raise DataError(
                    f"{path}: WAV chunk {cid!r} runs past the end of the file ({csize:,} bytes, "
                    f"{left:,} left): the file is truncated or corrupt; export or copy it again"
                )
            else:
                f.seek(csize + (csize & 1), 1)  # chunks are padded to an even length
            offset = f.tell()
    raise DataError(f"{path}: the WAV file has no data chunk (no samples); record or export it again")


def _check_format(path: Path, fmt: bytes, data_bytes: int, sample_rate: int) -> tuple[int, int, int]:
    def u(a: int, b: int) -> int:  # little-endian unsigned field fmt[a:b]
        return int.from_bytes(fmt[a:b], "little")

    tag, channels, rate, block, bits = u(0, 2), u(2, 4), u(4, 8), u(12, 14), u(14, 16)
    if tag == _EXTENSIBLE:
        if len(fmt) < 40 or fmt[26:40] != _GUID_TAIL:
            raise DataError(
                f"{path}: WAVE_FORMAT_EXTENSIBLE with an unknown sample format; {_convert_hint(sample_rate)}"
            )
        tag = u(24, 26)
    if tag not in _BITS:
        raise DataError(f"{path}: WAV sample format {tag:#x} is not PCM or IEEE float; {_convert_hint(sample_rate)}")
    if bits not in _BITS[tag]:
        kind = "PCM" if tag == _PCM else "float"
        raise DataError(f"{path}: {bits}-bit {kind} samples are not supported; {_convert_hint(sample_rate)}")
    if not 1 <= channels <= MAX_CHANNELS:
        raise DataError(
            f"{path}: the WAV header says {channels} channels (1 to {MAX_CHANNELS} are read); "
            f"{_convert_hint(sample_rate)}"
        )
    if not MIN_RATE <= rate <= MAX_RATE:
        raise DataError(
            f"{path}: the WAV header says a sample rate of {rate:,} Hz (read: {MIN_RATE:,} to "
            f"{MAX_RATE:,} Hz); the header is broken: {_convert_hint(sample_rate)}"
        )
    if block != channels * bits // 8:
        raise DataError(
            f"{path}: broken WAV header (block size {block} for {channels} x {bits}-bit samples); "
            f"{_convert_hint(sample_rate)}"
        )
    if data_bytes == 0:
        raise DataError(f"{path}: the WAV file holds no samples; record or export it again")
    if data_bytes % block:
        raise DataError(
            f"{path}: the WAV data ends in the middle of a sample ({data_bytes:,} bytes is not a "
            f"multiple of {block}); the file is truncated: export or copy it again"
        )
    frames = data_bytes // block
    _check_length(path, frames, channels, rate, sample_rate)
    return channels, rate, frames


def _check_length(path: Path, frames: int, channels: int, rate: int, sample_rate: int) -> None:
    out = frames * sample_rate / rate  # samples after resampling
    if frames * channels > MAX_SAMPLES or out > MAX_SAMPLES:
        raise DataError(
            f"{path}: {frames / rate:,.0f} s of {channels}-channel audio is more than diptych reads "
            f"({MAX_SAMPLES:,} samples); cut the part with the speech, e.g. `ffmpeg -i IN -t 5 OUT.wav`"
        )


def read_wav(path: str | Path, sample_rate: int) -> np.ndarray:
    """Mono float32 samples in [-1, 1] at ``sample_rate``: WAV (8/16/24/32-bit PCM, 32/64-bit float,
    plain or WAVE_FORMAT_EXTENSIBLE) or FLAC, decoded by libsndfile (``soundfile``) after the header
    has been checked (:func:`check_wav_header`), so no number read from the file sizes an allocation."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such audio file; check the path")
    with open(path, "rb") as f:
        magic = f.read(4)
    import soundfile as sf

    try:
        if magic == b"fLaC":
            info = sf.info(str(path))
            channels, rate, frames = info.channels, info.samplerate, info.frames
            if not (1 <= channels <= MAX_CHANNELS and MIN_RATE <= rate <= MAX_RATE and frames > 0):
                raise DataError(
                    f"{path}: FLAC header says {channels} channels at {rate:,} Hz, {frames:,} frames; "
                    f"{_convert_hint(sample_rate)}"
                )
            _check_length(path, frames, channels, rate, sample_rate)
        else:
            channels, rate, frames = check_wav_header(path, sample_rate)
        x, got_rate = sf.read(str(path), dtype="float32", always_2d=True, frames=frames)  # (n, channels)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, OSError) as e:
        raise DataError(
            f"{path}: cannot decode the audio ({' '.join(str(e).split()) or type(e).__name__}); "
            f"{_convert_hint(sample_rate)}"
        ) from None
    if x.shape[0] == 0 or x.shape[1] != channels or got_rate != rate:
        raise DataError(f"{path}: the audio does not match its header; {_convert_hint(sample_rate)}")
    if not np.isfinite(x).all():
        raise DataError(f"{path}: the file holds NaN or infinite samples; export it again")
    if (peak := float(np.abs(x).max())) > MAX_PEAK:  # float samples are +-1 at full scale
        raise DataError(
            f"{path}: samples reach {peak:.3g} times full scale (float WAV is +-1.0): it was exported "
            f"unnormalized or is corrupt; normalize it, e.g. `sox IN OUT.wav norm`"
        )
    x = x.mean(axis=1, dtype=np.float32) if channels > 1 else x[:, 0]  # (n,) mono
    return resample(x, rate, sample_rate)


def resample(x: np.ndarray, rate: int, sample_rate: int) -> np.ndarray:
    """``(n,)`` at ``rate`` -> ``(~n * sample_rate / rate,)`` at ``sample_rate``, float32, polyphase
    (``resample_poly``). Its filter grows with the reduced factors ``up/down``, so for odd rates (e.g.
    44,101 Hz: 8,000/44,101) the ratio is approximated by the nearest fraction whose factors are <= 1,000:
    at most 0.05% off over 1-384 kHz (a pitch change under a tenth of a semitone), in bounded time and memory."""
    if rate == sample_rate:
        return x.astype(np.float32)
    ratio = Fraction(sample_rate, rate)
    if max(ratio.numerator, ratio.denominator) > MAX_POLY:  # the larger factor is the one to bound
        ratio = ratio.limit_denominator(MAX_POLY) if ratio < 1 else 1 / (1 / ratio).limit_denominator(MAX_POLY)
    from scipy.signal import resample_poly

    return resample_poly(x, ratio.numerator, ratio.denominator).astype(np.float32)


def fix_length(x: np.ndarray, n: int) -> np.ndarray:
    """Centre ``x`` in ``n`` samples: zero-pad both sides equally, or keep the middle ``n``."""
    if len(x) >= n:
        start = (len(x) - n) // 2
        return x[start : start + n]
    left = (n - len(x)) // 2
    return np.pad(x, (left, n - len(x) - left))


# ----------------------------------------------------------------------------- features


def hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, np.float64) / 2595.0) - 1.0)


def mel_filterbank(fe: FrontEnd) -> np.ndarray:
    """``(n_mels, n_fft // 2 + 1)`` triangles: filter ``m`` rises from edge ``m`` to ``m + 1`` and falls
    to ``m + 2`` (``n_mels + 2`` edges evenly spaced in mel), with peak ``2 / (f_{m+2} - f_m)``."""
    edges = mel_to_hz(np.linspace(hz_to_mel(fe.fmin), hz_to_mel(fe.fmax), fe.n_mels + 2))  # (M + 2,) Hz
    freqs = np.arange(fe.n_fft // 2 + 1) * fe.sample_rate / fe.n_fft  # (K,) bin centres in Hz
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # (M, 1) each
    up = (freqs - lo) / (mid - lo)
    down = (hi - freqs) / (hi - mid)
    tri = np.maximum(0.0, np.minimum(up, down))  # (M, K)
    return (tri * (2.0 / (hi - lo))).astype(np.float32)


def hann(n: int) -> np.ndarray:
    """Periodic Hann window (as for spectral analysis): ``0.5 - 0.5 cos(2 pi k / n)``."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)


def power_spectrogram(x: np.ndarray, fe: FrontEnd) -> np.ndarray:
    """``(..., num_samples)`` -> ``(..., frames, n_fft // 2 + 1)`` power of the Hann-windowed frames."""
    idx = np.arange(fe.frames)[:, None] * fe.hop + np.arange(fe.n_fft)[None, :]  # (T, n_fft)
    frames = x[..., idx] * hann(fe.n_fft)  # (..., T, n_fft)
    spec = np.fft.rfft(frames.astype(np.float64), axis=-1)  # (..., T, K)
    return (spec.real**2 + spec.imag**2).astype(np.float32)


def log_mel(x: np.ndarray, fe: FrontEnd) -> np.ndarray:
    """``(..., num_samples)`` waveforms -> ``(..., n_mels, frames)`` log-mel images."""
    if x.shape[-1] != fe.num_samples:
        raise ValueError(f"expected {fe.num_samples} samples, got {x.shape[-1]}; call fix_length first")
    mel = power_spectrogram(x, fe) @ mel_filterbank(fe).T  # (..., T, M)
    return np.log(np.swapaxes(mel, -1, -2) + fe.floor).astype(np.float32)  # (..., M, T)


def dither(x: np.ndarray, fe: FrontEnd) -> np.ndarray:
    """``x + fe.dither * N(0, 1)``, seeded by the bytes of ``x`` (deterministic per recording)."""
    rng = np.random.default_rng(zlib.crc32(x.astype(np.float32).tobytes()))
    return (x + fe.dither * rng.standard_normal(x.shape)).astype(np.float32)


def speech_level(x: np.ndarray, fe: FrontEnd) -> np.ndarray:
    """``x`` scaled so its speech frames (:mod:`diptych.data.vad`) have an RMS of ``fe.level`` dBFS, clipped
    to [-1, 1]; unchanged when ``fe.level`` is 0 or there is no speech. Silence between words does not count,
    so a digit said once and one said after a long pause come out equally loud."""
    from diptych.data.vad import frame_levels, speech_threshold

    levels = frame_levels(x, fe.sample_rate)  # (F,) dBFS
    threshold = speech_threshold(levels) if fe.level else None
    if threshold is None:
        return x
    speech_db = 10 * np.log10(np.mean(10 ** (levels[levels >= threshold] / 10)))  # power mean of speech frames
    return np.clip(x * np.float32(10 ** ((fe.level - speech_db) / 20)), -1, 1).astype(np.float32)


def smooth_bands(logmel: np.ndarray, fe: FrontEnd) -> np.ndarray:
    """``(..., n_mels, frames)`` log-mel with each frame's spectrum kept to its first ``fe.cepstra`` cepstral
    terms (unchanged when 0): ``P @ L`` with ``P = D_K^T D_K``, ``D_K`` the first K rows of the orthonormal
    DCT-II over the bands. Liftering as MFCCs do, but back on the bands, so the image keeps its shape. It
    keeps the spectral envelope (the formants that make a digit) and drops the fine ripple of the voice's
    pitch harmonics, which differs from one speaker to the next."""
    if not fe.cepstra or fe.cepstra >= fe.n_mels:
        return logmel
    m, k = np.arange(fe.n_mels), np.arange(fe.cepstra)[:, None]
    dct = np.sqrt(2.0 / fe.n_mels) * np.cos(np.pi / fe.n_mels * (m + 0.5) * k)  # (K, M)
    dct[0] /= np.sqrt(2.0)  # orthonormal: D_K D_K^T = I
    return np.einsum("mn,...nt->...mt", dct.T @ dct, logmel).astype(np.float32)  # (..., M, T)


def trim_silence(x: np.ndarray, fe: FrontEnd) -> np.ndarray:
    """``x`` from its first spoken sample to its last (:func:`diptych.data.vad.trim`, which keeps a short
    margin) when ``fe.trim`` is set and there is speech; otherwise unchanged. Centring the speech rather than
    the file puts a digit at the same place in the image whatever silence its recording kept around it."""
    from diptych.data.vad import trim

    spoken = trim(x, fe.sample_rate) if fe.trim else None
    return x if spoken is None else spoken


def waveform_features(x: np.ndarray, fe: FrontEnd) -> np.ndarray:
    """Mono samples ``(n,)`` at ``fe.sample_rate`` -> the ``(n_mels, frames)`` log-mel image (not yet
    normalized) of their middle ``num_samples``, brought to ``fe.level``, cut to the speech when ``fe.trim``
    is set, centred and zero-padded as the training recordings are, and smoothed over the bands to
    ``fe.cepstra`` terms."""
    x = trim_silence(speech_level(x, fe), fe)  # (n',)
    return smooth_bands(log_mel(dither(fix_length(x, fe.num_samples), fe), fe), fe)  # (M, T)


def wav_features(path: str | Path, fe: FrontEnd) -> np.ndarray:
    """One wav file -> its ``(n_mels, frames)`` log-mel image (not yet normalized)."""
    return waveform_features(read_wav(path, fe.sample_rate), fe)


# ----------------------------------------------------------------------------- normalization


def feature_stats(train_logmel: np.ndarray, fe: FrontEnd) -> dict:
    """Per-mel-band statistics of the *training* split ``(N, M, T)``, plus what augmentation needs.

    ``mean``/``std`` ``(M,)``: over samples and frames; ``silence`` ``(M,)``: the normalized value of a
    silent frame ``(log(floor) - mean) / std``; ``noise_shape`` ``(M,)``: the relative mel energy of
    white noise (filter areas, mean 1); ``noise_bins`` ``(M,)``: how many independent FFT bins each
    band averages, ``(sum F)^2 / sum F^2``, which sets how much a noise band fluctuates.
    """
    mean = train_logmel.mean(axis=(0, 2), dtype=np.float64)
    std = train_logmel.std(axis=(0, 2), dtype=np.float64) + 1e-5
    fb = mel_filterbank(fe).astype(np.float64)
    area = fb.sum(axis=1)
    stats = {
        "mean": mean,
        "std": std,
        "silence": (np.log(fe.floor) - mean) / std,
        "noise_shape": area / area.mean(),
        "noise_bins": area**2 / (fb**2).sum(axis=1),
        "floor": np.full_like(mean, fe.floor),
    }
    return {k: np.asarray(v, np.float32) for k, v in stats.items()}


def normalize(logmel: np.ndarray, stats: dict) -> np.ndarray:
    """``(N, M, T)`` -> ``(logmel - mean[m]) / std[m]``."""
    return ((logmel - stats["mean"][:, None]) / stats["std"][:, None]).astype(np.float32)


# ----------------------------------------------------------------------------- the voice, and views

# A voice's mean spectrum (its vocal tract, its microphone) is removed as speech recognizers have long done with
# cepstral mean normalization per speaker: each voice's log-mel frames of speech are moved, one offset per band,
# so that their mean is the average of the training voices' means. The offset needs several recordings of the
# voice; one recording's own mean would also remove its digit (held-out speakers: 77% against 90%).
VOICE_SPEECH = -8.0  # nats: a frame whose loudest band is above this is speech (silence lies at log(floor))
MIN_VOICE = 5  # recordings of a voice needed to shift it; fewer are read as the average voice (no shift)


def voice_means(logmel: np.ndarray, voices: np.ndarray) -> dict[str, np.ndarray]:
    """Each voice's mean log-mel ``(M,)`` over its frames of speech; ``logmel`` ``(N, M, T)``, ``voices`` ``(N,)``."""
    speech = np.broadcast_to(logmel.max(axis=1, keepdims=True) > VOICE_SPEECH, logmel.shape)  # (N, M, T)
    means = {}
    for v in sorted(set(voices.tolist())):
        mine, w = logmel[voices == v], speech[voices == v]
        means[v] = (mine * w).sum(axis=(0, 2), dtype=np.float64) / np.maximum(w.sum(axis=(0, 2)), 1)  # (M,)
    return means


def shift_voices(logmel: np.ndarray, voices: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``(N, M, T)`` log-mel with each voice's speech frames moved by ``target - voice_mean`` ``(M,)``;
    silent frames stay silent. A voice with fewer than :data:`MIN_VOICE` recordings is left as it is."""
    out = logmel.astype(np.float32, copy=True)
    speech = logmel.max(axis=1, keepdims=True) > VOICE_SPEECH  # (N, 1, T)
    for v, mean in voice_means(logmel, voices).items():
        mine = voices == v
        if mine.sum() >= MIN_VOICE:
            out[mine] += (speech[mine] * (target - mean)[None, :, None]).astype(np.float32)
    return out


VIEW_FRAMES, VIEW_BANDS = (-3, 0, 3), (-1, 0, 1)  # 48 ms either way; one mel band either way


def _roll(x: np.ndarray, k: int, axis: int) -> np.ndarray:
    """``x`` moved ``k`` places along ``axis``; the cells moved in repeat the edge they came from."""
    if k == 0:
        return x
    idx = np.clip(np.arange(x.shape[axis]) - k, 0, x.shape[axis] - 1)
    return np.take(x, idx, axis=axis)


def shifted_views(x: np.ndarray) -> list[np.ndarray]:
    """The nine views of normalized images ``(N, M, T)`` that a ``views`` front end averages predictions
    over: shifted by ``VIEW_FRAMES`` frames and ``VIEW_BANDS`` mel bands (a speaker a little early or late, a
    voice a little higher or lower). Averaging the probabilities of the nine gave held-out speakers +0.7 points."""
    return [_roll(_roll(x, f, 2), b, 1) for f in VIEW_FRAMES for b in VIEW_BANDS]

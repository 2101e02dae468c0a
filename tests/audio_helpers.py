"""Synthetic audio for the speech tests: wav writing and a tiny FSDD-shaped folder of tones."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np


def write_wav(path: Path, x: np.ndarray, rate: int = 8000, width: int = 2) -> Path:
    """``x`` ``(n,)`` or ``(n, channels)`` floats in [-1, 1] -> PCM wav of ``width`` bytes per sample."""
    x = np.asarray(x, np.float64)
    x = x[:, None] if x.ndim == 1 else x
    if width == 1:
        data = np.round(x * 127 + 128).astype(np.uint8).tobytes()
    else:
        data = np.round(x * (2 ** (8 * width - 1) - 1)).astype({2: "<i2", 4: "<i4"}[width]).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(x.shape[1])
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(data)
    return path


def tone(freq: float, seconds: float, rate: int = 8000, amp: float = 0.5, phase: float = 0.0) -> np.ndarray:
    return amp * np.cos(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate + phase)


def joined_wav(path: Path, parts: list, pause: float, rate: int = 8000, noise: np.ndarray | None = None) -> str:
    """The recordings ``parts`` (wav paths) in one file, each after ``pause`` seconds of silence (or of
    ``noise`` ``(n,)``, repeated), with a pause at the end too."""
    from diptych.data.audio import read_wav

    gap = np.zeros(int(pause * rate)) if noise is None else np.resize(noise, int(pause * rate))
    pieces = [piece for p in parts for piece in (gap, read_wav(p, rate))]
    return str(write_wav(path, np.concatenate([*pieces, gap])))


def tone_digits(folder: Path, speakers=("anna", "bert"), takes: int = 6, seed: int = 0) -> Path:
    """An FSDD-shaped folder: digit ``d`` is a 0.4-0.6 s chirp starting at 300 * 1.3^d Hz, in noise
    (25% apart, so the +-15% frequency warp of the fsdd tasks keeps the digits apart)."""
    rng = np.random.default_rng(seed)
    for s in speakers:
        for d in range(10):
            for t in range(takes):
                n = int(rng.uniform(0.4, 0.6) * 8000)
                f = 300 * 1.3**d * (1 + 0.05 * np.linspace(0, 1, n))  # a short upward chirp
                x = 0.4 * np.cos(2 * np.pi * np.cumsum(f) / 8000) + 0.02 * rng.standard_normal(n)
                write_wav(folder / f"{d}_{s}_{t}.wav", x)
    return folder

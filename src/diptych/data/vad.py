"""Where the speech is in a recording: energy-based voice activity, in numpy.

A person's own recording is not an FSDD take: it may start with a second of room noise, hold several
digits, or hold none. ``diptych transcribe`` therefore finds the spoken parts first.

Maths, for mono samples ``x`` at ``rate``:

* frame levels ``L[f] = 10 log10(mean(x[f*n : (f+1)*n]^2) + 1e-12)`` dBFS over ``n = FRAME_S * rate``;
* the noise floor is a low percentile of ``L`` (``FLOOR_PERCENTILE``: the quietest tenth of the frames)
  and the loudest frame is the peak;
* a frame is speech where ``L >= threshold = max(floor + RISE * (peak - floor), peak - DEPTH_DB)``:
  part of the way from the floor to the peak, and never deeper than ``DEPTH_DB`` under the peak, so a
  studio-quiet floor does not make breaths into speech;
* runs of speech closer than ``MIN_GAP_S`` are one span (the closure in "six" or "eight" is shorter),
  spans shorter than ``MIN_SPEECH_S`` are clicks and dropped, and each span keeps ``MARGIN_S`` of
  context on both sides (a word's quiet onset and tail).

No speech at all: the peak is under ``SILENT_DBFS`` (digital silence, or a microphone left off), or a
recording of ``STEADY_S`` or more barely moves (``peak - floor < STEADY_DB``: steady noise or a hum,
where speech rises 10-60 dB over the floor). A shorter one is a cut-out word: the most tightly cut FSDD
take (0.4 s) spans only 4.6 dB, and a synthetic tone none.

Example::

    >>> import numpy as np
    >>> rate = 8000
    >>> word = 0.3 * np.sin(np.arange(3200) / 3.0)               # 0.4 s of "speech"
    >>> gap = np.zeros(4000)                                       # 0.5 s of silence
    >>> x = np.concatenate([gap, word, gap, word, gap]).astype(np.float32)
    >>> [(round(a / rate, 2), round(b / rate, 2)) for a, b in speech_spans(x, rate)]
    [(0.45, 0.95), (1.35, 1.85)]
    >>> speech_spans(np.zeros(8000, np.float32), rate)
    []
"""

from __future__ import annotations

import numpy as np

FRAME_S = 0.02  # 20 ms frames: short enough to find the gap between two digits
FLOOR_PERCENTILE = 10
RISE = 0.3
DEPTH_DB = 35.0
SILENT_DBFS = -60.0
STEADY_DB = 3.0
STEADY_S = 1.0
MIN_GAP_S = 0.25
MIN_SPEECH_S = 0.08
MARGIN_S = 0.05


def frame_levels(x: np.ndarray, rate: int) -> np.ndarray:
    """``(n,)`` samples -> ``(F,)`` levels in dBFS of consecutive ``FRAME_S`` frames (the last one partial)."""
    n = max(1, int(round(FRAME_S * rate)))
    if len(x) == 0:
        return np.zeros(0)
    pad = (-len(x)) % n
    frames = np.pad(np.asarray(x, np.float64), (0, pad)).reshape(-1, n)  # (F, n)
    power = (frames**2).sum(axis=1) / np.r_[np.full(len(frames) - 1, n), n - pad]  # the partial frame's own mean
    return 10 * np.log10(power + 1e-12)


def speech_threshold(levels: np.ndarray) -> float | None:
    """The level at and above which a frame of ``levels`` (:func:`frame_levels`) is speech, or None when
    the recording holds no speech."""
    if len(levels) == 0:
        return None
    peak, floor = float(levels.max()), float(np.percentile(levels, FLOOR_PERCENTILE))
    if peak < SILENT_DBFS or (peak - floor < STEADY_DB and len(levels) * FRAME_S >= STEADY_S):
        return None
    if peak - floor < STEADY_DB:  # a cut-out word: all of it is speech
        return float(levels.min())
    return max(floor + RISE * (peak - floor), peak - DEPTH_DB)


def speech_spans(x: np.ndarray, rate: int) -> list[tuple[int, int]]:
    """``[(start, end)]`` sample ranges of the spoken parts of ``x``, in order; ``[]`` when none."""
    levels = frame_levels(x, rate)
    threshold = speech_threshold(levels)
    if threshold is None:
        return []
    n = max(1, int(round(FRAME_S * rate)))
    loud = np.flatnonzero(levels >= threshold)  # frame indices, ascending
    # a new span starts wherever the quiet between two loud frames lasts MIN_GAP_S or more
    breaks = np.flatnonzero(np.diff(loud) * n >= MIN_GAP_S * rate + n)
    firsts, lasts = np.r_[loud[0], loud[breaks + 1]], np.r_[loud[breaks], loud[-1]]
    margin = int(round(MARGIN_S * rate))
    return [
        (max(0, int(a) * n - margin), min(len(x), (int(b) + 1) * n + margin))
        for a, b in zip(firsts, lasts)
        if (b + 1 - a) * n >= MIN_SPEECH_S * rate
    ]


def trim(x: np.ndarray, rate: int) -> np.ndarray | None:
    """``x`` without its leading and trailing silence (from the first span's start to the last one's end),
    or None when it holds no speech."""
    spans = speech_spans(x, rate)
    return x[spans[0][0] : spans[-1][1]] if spans else None

"""Audio augmentation, drawn here and applied on device by each twin (``backends/*/augment.py``).

All randomness lives in this numpy module: for training step ``step`` of ``epoch`` the generator
``default_rng([seed, epoch, step, SALT])`` draws the parameters below, so both twins (and a resumed
run) augment a batch identically, and each twin's ``augment.apply(x, params)`` is plain tensor maths:

0. frequency warp (vocal tract length perturbation, Jaitly & Hinton 2013): band ``m`` of the output
   reads band ``m * alpha_b`` of the input, linearly interpolated: ``(1 - w) x[lo] + w x[lo + 1]``
   with ``lo = floor(m alpha_b)`` and ``w = m alpha_b - lo`` (drawn here as ``warp_lo``/``warp_w``);
1. time shift by ``shift[b]`` frames (positive: later), frames shifted in are silence;
2. additive noise at a random SNR, in the mel-power domain: with ``L = x * std + mean`` the log-mel,
   ``x' = (log(exp(L) + noise) - mean) / std``. For white noise of power ``sigma^2`` the expected mel
   energy of band ``m`` is proportional to the filter's area, so ``noise[b, m, t] = P_b / 10^(snr_b/10)
   * shape[m] * g`` with ``P_b`` the clip's mean mel energy, ``shape`` the normalized filter areas
   and ``g ~ Gamma(k_m, 1/k_m)`` (mean 1): a band averaging ``k_m`` periodogram bins (each
   exponential) fluctuates like that;
3. SpecAugment (Park et al. 2019): ``keep`` is 0 inside a few random frequency bands and time
   spans, where the normalized image is set to 0, the training mean.
"""

from __future__ import annotations

import numpy as np

from diptych.tasks import AugmentSpec

SALT = 0x5EEC  # keeps these streams apart from the batch-order stream [seed, epoch]


def _bands(rng: np.random.Generator, batch: int, count: int, max_width: int, size: int) -> np.ndarray:
    """``(B, size)`` bool, True inside ``count`` bands of width ``0..max_width`` at random starts."""
    width = rng.integers(0, max_width + 1, (batch, count, 1))
    start = rng.integers(0, size - width + 1)  # (B, count, 1), each band fits
    pos = np.arange(size)
    return ((pos >= start) & (pos < start + width)).any(axis=1)


def draw(spec: AugmentSpec, features: dict, x: np.ndarray, seed: int, epoch: int, step: int) -> dict[str, np.ndarray]:
    """Parameters to augment the normalized log-mel batch ``x`` ``(B, M, T)`` (see the module docstring)."""
    rng = np.random.default_rng([seed, epoch, step, SALT])
    b, m, t = x.shape
    mean, std, silence = (np.asarray(features[k], np.float32)[:, None] for k in ("mean", "std", "silence"))
    alpha = rng.uniform(1 - spec.warp, 1 + spec.warp, b)
    src = np.clip(np.arange(m)[None, :] * alpha[:, None], 0, m - 1)  # (B, M) source band
    lo = np.minimum(np.floor(src), m - 2)
    shift = rng.integers(-spec.max_shift, spec.max_shift + 1, b)
    snr_db = rng.uniform(*spec.snr_db, b)
    noisy = rng.random(b) < spec.noise_prob
    energy = np.exp(x.astype(np.float64) * std + mean).mean(axis=(1, 2))  # (B,) mean mel energy P_b
    k = np.asarray(features["noise_bins"], np.float64)[None, :, None]  # (1, M, 1)
    g = rng.gamma(k, 1.0 / k, (b, m, t))
    scale = energy / 10 ** (snr_db / 10) * noisy  # (B,)
    noise = scale[:, None, None] * np.asarray(features["noise_shape"])[None, :, None] * g  # (B, M, T)
    masked = (
        _bands(rng, b, spec.freq_masks, spec.freq_width, m)[:, :, None]
        | _bands(rng, b, spec.time_masks, spec.time_width, t)[:, None, :]
    )  # (B, M, T)
    return {
        "warp_lo": lo.astype(np.int32),
        "warp_w": (src - lo).astype(np.float32),
        "shift": shift.astype(np.int32),
        "noise": noise.astype(np.float32),
        "keep": (~masked).astype(np.float32),
        "mean": mean,
        "std": std,
        "silence": silence,
    }


class Augmenter:
    """Binds a task's :class:`AugmentSpec`, the train-split statistics and the run's seed."""

    def __init__(self, spec: AugmentSpec, features: dict, seed: int):
        self.spec, self.features, self.seed = spec, features, seed

    def __call__(self, x: np.ndarray, epoch: int, step: int) -> dict[str, np.ndarray]:
        return draw(self.spec, self.features, x, self.seed, epoch, step)


def augmenter_for(task, dataset, seed: int) -> Augmenter | None:
    """The task's augmenter, or ``None`` when the task has none (every non-audio task)."""
    if task.augment is None or not dataset.features:
        return None
    return Augmenter(task.augment, dataset.features, seed)

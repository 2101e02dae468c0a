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
   spans, where the normalized image is set to 0, the training mean;
4. channel (a different microphone or room, as an equalizer would colour it), applied after the warp: a
   smooth gain curve over the mel bands is added to the log-mel, ``L' = L + sum_k a_bk cos(pi k m / (M - 1))``
   for ``k = 1..EQ_TERMS`` with ``a_bk`` uniform in ``+-eq`` nats; ``eq[b, m] = (L' - L) / std[m]`` in the
   normalized domain. Drawn after 0-3, and only when ``eq > 0``, so the draws of 0-3 are the same with it or without;
5. mixup (Zhang et al. 2018), after everything else: ``x' = lam x + (1 - lam) x[perm]`` with ``lam`` ``(B,)`` from
   ``Beta(mixup, mixup)`` and ``perm`` a permutation of the batch; the loss is ``lam ce(y) + (1 - lam) ce(y[perm])``,
   as for images. Drawn last, only when ``mixup > 0``.
"""

from __future__ import annotations

import numpy as np

SALT = 0x5EEC  # keeps these streams apart from the batch-order stream [seed, epoch]


def _bands(rng: np.random.Generator, batch: int, count: int, max_width: int, size: int) -> np.ndarray:
    """``(B, size)`` bool, True inside ``count`` bands of width ``0..max_width`` at random starts."""
    width = rng.integers(0, max_width + 1, (batch, count, 1))
    start = rng.integers(0, size - width + 1)  # (B, count, 1), each band fits
    pos = np.arange(size)
    return ((pos >= start) & (pos < start + width)).any(axis=1)


def draw(spec, features: dict, x: np.ndarray, seed: int, epoch: int, step: int) -> dict[str, np.ndarray]:
    """Parameters to augment the normalized log-mel batch ``x`` ``(B, M, T)`` (see the module docstring) as
    the task's :class:`~diptych.augment_specs.AugmentSpec` ``spec`` says. (No import of the specs here: they
    build their augmenters from this module.)"""
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
    return (
        {
            "warp_lo": lo.astype(np.int32),
            "warp_w": (src - lo).astype(np.float32),
            "shift": shift.astype(np.int32),
            "noise": noise.astype(np.float32),
            "keep": (~masked).astype(np.float32),
            "mean": mean,
            "std": std,
            "silence": silence,
        }
        | (_channel(rng, b, m, std, spec.eq) if spec.eq > 0 else {})
        | (_mixup(rng, b, spec.mixup) if spec.mixup > 0 else {})
    )


EQ_TERMS = 4  # cosine terms of the channel's gain curve: smooth over the 32 bands, as a microphone's response is


def _channel(rng: np.random.Generator, b: int, m: int, std: np.ndarray, eq: float) -> dict[str, np.ndarray]:
    """Step 4 of the module docstring: ``(B, M, 1)`` gain curves in the normalized domain."""
    terms = np.arange(1, EQ_TERMS + 1)
    basis = np.cos(np.pi * terms[:, None] * np.arange(m)[None, :] / (m - 1))  # (K, M)
    curve = rng.uniform(-eq, eq, (b, EQ_TERMS)) @ basis  # (B, M) nats
    return {"eq": (curve[:, :, None] / std[None]).astype(np.float32)}  # std (M, 1)


def _mixup(rng: np.random.Generator, b: int, alpha: float) -> dict[str, np.ndarray]:
    """Step 5 of the module docstring: the partner of each sample and its own share ``lam`` ``(B,)``."""
    perm = rng.permutation(b)
    return {"perm": perm.astype(np.int32), "lam": rng.beta(alpha, alpha, b).astype(np.float32)}


class Augmenter:
    """Binds a task's :class:`~diptych.augment_specs.AugmentSpec`, the train-split statistics and the run's seed."""

    def __init__(self, spec, features: dict, seed: int):
        self.spec, self.features, self.seed = spec, features, seed

    def __call__(self, x: np.ndarray, epoch: int, step: int) -> dict[str, np.ndarray]:
        return draw(self.spec, self.features, x, self.seed, epoch, step)


# ----------------------------------------------------------------------------- images
#
# Images ``(B, H, W)`` or ``(B, C, H, W)`` are augmented by one affine warp and a few masks, all drawn
# here; each twin's ``augment.apply_image`` is plain tensor maths on them:
#
# * ``theta`` ``(B, 2, 3)``: PyTorch's ``F.affine_grid`` convention with ``align_corners=False``. Output
#   pixel ``(i, j)`` sits at normalized ``(u, v) = ((2j + 1) / W - 1, (2i + 1) / H - 1)`` (pixel centres;
#   the image spans ``[-1, 1]`` edge to edge) and reads the input at ``theta @ (u, v, 1)``, bilinearly,
#   with pixels outside the image equal to the background ``fill``. Rotation by ``a`` degrees, scale
#   ``s``, a flip and a translation by whole pixels are one matrix, so the image is resampled once;
# * ``keep`` ``(B, H, W)``: 0 inside the erased rectangle (random erasing, Zhong et al. 2017), which
#   becomes background;
# * ``mix`` ``(B, H, W)`` and ``perm`` ``(B,)``: ``x' = mix x + (1 - mix) x[perm]`` (mixup: ``mix`` is the
#   constant ``lam``; cutmix: 0 inside a box); the loss is then ``lam ce(y) + (1 - lam) ce(y[perm])`` with
#   ``lam`` ``(B,)`` the mean of ``mix``, the fraction of the image that is the sample's own.

IMAGE_SALT = 0x1A6E


def _box(rng: np.random.Generator, b: int, h: int, w: int, area: np.ndarray) -> np.ndarray:
    """``(B, H, W)`` bool, True inside a rectangle of about ``area`` (B,) of the image, at a random place."""
    side_h = np.clip(np.round(h * np.sqrt(area)), 0, h).astype(int)  # square-ish, clipped to the image
    side_w = np.clip(np.round(w * np.sqrt(area)), 0, w).astype(int)
    top = rng.integers(0, h - side_h + 1)  # (B,)
    left = rng.integers(0, w - side_w + 1)
    rows, cols = np.arange(h)[None, :, None], np.arange(w)[None, None, :]
    return (
        (rows >= top[:, None, None])
        & (rows < (top + side_h)[:, None, None])
        & (cols >= left[:, None, None])
        & (cols < (left + side_w)[:, None, None])
    )


def draw_image(spec, shape: tuple[int, ...], fill: float, seed: int, epoch: int, step: int) -> dict[str, np.ndarray]:
    """Parameters for an image batch of ``shape`` ``(B, [C,] H, W)`` (see the section comment above)."""
    rng = np.random.default_rng([seed, epoch, step, IMAGE_SALT])
    b, h, w = shape[0], shape[-2], shape[-1]
    angle = np.deg2rad(rng.uniform(-spec.rotate, spec.rotate, b))  # positive: clockwise on screen (y points down)
    scale = rng.uniform(1 - spec.scale, 1 + spec.scale, b)
    flip = np.where(rng.random(b) < spec.flip, -1.0, 1.0)
    shift = rng.integers(-spec.shift, spec.shift + 1, (b, 2))  # (dx, dy) pixels; positive: right, down
    # In pixel units (x right, y down) the output at p reads the input at A p + t, with A = R(-a) F / s
    # (an image rotated by +a on screen reads its source rotated back) and t = -shift.
    cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
    a = np.stack([np.stack([cos * flip, sin], -1), np.stack([-sin * flip, cos], -1)], -2)  # (B, 2, 2)
    half = np.array([w / 2, h / 2])
    theta = np.concatenate(
        [
            a * half[None, None, :] / half[None, :, None],  # to normalized units
            (-shift / half)[:, :, None],
        ],
        axis=2,
    )  # (B, 2, 3)
    params = {
        "theta": theta.astype(np.float32),
        "fill": np.full(b, fill, np.float32),
    }  # per sample, so it splits by rows like the rest
    if spec.erase > 0:
        erased = (rng.random(b) < spec.erase)[:, None, None] & _box(rng, b, h, w, rng.uniform(0.02, 0.2, b))
        params["keep"] = (~erased).astype(np.float32)
    if spec.mixup > 0 or spec.cutmix > 0:
        perm = rng.permutation(b)
        if spec.cutmix > 0:
            lam = rng.beta(spec.cutmix, spec.cutmix, b)
            mix = (~_box(rng, b, h, w, 1 - lam)).astype(np.float32)  # the pasted box covers ~1 - lam
        else:
            lam = rng.beta(spec.mixup, spec.mixup, b)
            mix = np.broadcast_to(lam[:, None, None], (b, h, w)).astype(np.float32)
        params |= {"perm": perm.astype(np.int32), "mix": mix, "lam": mix.mean(axis=(1, 2), dtype=np.float32)}
    return params


class ImageAugmenter:
    """Binds a task's :class:`~diptych.augment_specs.ImageAugmentSpec`, the background value and the run's seed."""

    def __init__(self, spec, fill: float, seed: int):
        self.spec, self.fill, self.seed = spec, fill, seed

    def __call__(self, x: np.ndarray, epoch: int, step: int) -> dict[str, np.ndarray]:
        return draw_image(self.spec, x.shape, self.fill, self.seed, epoch, step)


def augmenter_for(task, dataset, seed: int):
    """The task's augmenter (audio or image), or ``None`` when the task augments nothing."""
    return task.augment.augmenter(dataset, seed) if task.augment is not None else None

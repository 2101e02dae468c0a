"""Augmentation on device, JAX twin: applies the parameters drawn by :mod:`diptych.data.augment`
(audio: a normalized log-mel batch; images: an affine warp, erasing and mixing).

Pure and jit-friendly: it runs inside the jitted train step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from diptych.backends.jax.ops import affine_grid, grid_sample


def shift_time(x: jax.Array, shift: jax.Array, fill: jax.Array) -> jax.Array:
    """``out[b, :, t] = x[b, :, t - shift[b]]``, and ``fill`` ``(M, 1)`` where that is outside ``[0, T)``."""
    t = x.shape[-1]
    src = jnp.arange(t)[None, :] - shift[:, None]  # (B, T) source frame
    inside = (src >= 0) & (src < t)  # (B, T)
    moved = jnp.take_along_axis(x, jnp.clip(src, 0, t - 1)[:, None, :], axis=2)  # (B, M, T)
    return jnp.where(inside[:, None, :], moved, fill)


def warp_freq(x: jax.Array, lo: jax.Array, w: jax.Array) -> jax.Array:
    """``out[b, m] = (1 - w[b, m]) x[b, lo[b, m]] + w[b, m] x[b, lo[b, m] + 1]`` over the mel axis."""
    below = jnp.take_along_axis(x, lo[:, :, None], axis=1)  # (B, M, T)
    above = jnp.take_along_axis(x, (lo + 1)[:, :, None], axis=1)
    return below + w[:, :, None] * (above - below)


def apply_audio(x: jax.Array, p: dict[str, jax.Array]) -> jax.Array:
    """Warp, [colour,] shift, add noise in the mel-power domain, mask[, mix]: normalized log-mel ``(B, M, T)``."""
    x = warp_freq(x, p["warp_lo"], p["warp_w"])
    if "eq" in p:  # a microphone's colouring: a smooth gain curve over the bands, (B, M, 1)
        x = x + p["eq"]
    x = shift_time(x, p["shift"], p["silence"])  # (B, M, T)
    power = jnp.exp(x * p["std"] + p["mean"]) + p["noise"]  # (B, M, T) mel energy + noise
    x = (jnp.log(power) - p["mean"]) / p["std"]
    x = x * p["keep"]  # SpecAugment: masked cells become 0, the training mean
    if "perm" in p:  # mixup with another recording of the batch
        lam = p["lam"][:, None, None]  # (B, 1, 1)
        x = lam * x + (1 - lam) * x[p["perm"]]
    return x


def warp(x: jax.Array, theta: jax.Array, fill: jax.Array) -> jax.Array:
    """Bilinear affine resampling of ``x`` ``(B, C, H, W)`` by ``theta`` ``(B, 2, 3)``; pixels from outside
    the image are ``fill`` ``(B, 1, 1, 1)``."""
    grid = affine_grid(theta, x.shape[2], x.shape[3])  # (B, H, W, 2) source (x, y) in [-1, 1]
    # grid_sample pads with zeros: warp the difference from the background, then add it back.
    return grid_sample(x - fill, grid) + fill


def apply_image(x: jax.Array, p: dict[str, jax.Array]) -> jax.Array:
    """Warp, erase, mix: images ``(B, H, W)`` or ``(B, C, H, W)`` in, the same shape out."""
    four = x[:, None] if x.ndim == 3 else x  # (B, C, H, W)
    fill = p["fill"][:, None, None, None]  # (B, 1, 1, 1) background
    four = warp(four, p["theta"], fill)
    if "keep" in p:  # random erasing: the rectangle becomes background
        keep = p["keep"][:, None]  # (B, 1, H, W)
        four = four * keep + fill * (1 - keep)
    if "perm" in p:  # mixup / cutmix with another sample of the batch
        mix = p["mix"][:, None]  # (B, 1, H, W)
        four = mix * four + (1 - mix) * four[p["perm"]]
    return four.reshape(x.shape)


def apply(x: jax.Array, p: dict[str, jax.Array]) -> jax.Array:
    """The augmentation that ``p`` describes: images when it has a ``theta``, else audio."""
    return apply_image(x, p) if "theta" in p else apply_audio(x, p)


def mixed_loss(logits: jax.Array, y: jax.Array, p: dict[str, jax.Array] | None, smoothing: float = 0.0) -> jax.Array:
    """Mean cross-entropy; under mixup/cutmix ``lam ce(y) + (1 - lam) ce(y[perm])`` per sample.
    ``smoothing`` e: each ce is taken against ``(1 - e) onehot(y) + e / classes`` (torch's ``label_smoothing``)."""
    own = cross_entropy(logits, y, smoothing)  # (B,) or (B, T)
    if p is None or "perm" not in p:
        return own.mean()
    other = cross_entropy(logits, y[p["perm"]], smoothing)
    return (p["lam"] * own + (1 - p["lam"]) * other).mean()


def cross_entropy(logits: jax.Array, y: jax.Array, smoothing: float = 0.0) -> jax.Array:
    """Per prediction: ``-(1 - e) log p_y - e mean_k log p_k``, with ``p = softmax(logits)``."""
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, y)  # (B,) or (B, T)
    if not smoothing:
        return nll
    return (1 - smoothing) * nll - smoothing * jax.nn.log_softmax(logits).mean(-1)

"""Audio augmentation on device, JAX twin: applies the parameters drawn by :mod:`diptych.data.augment`.

Pure and jit-friendly: it runs inside the jitted train step."""

from __future__ import annotations

import jax
import jax.numpy as jnp


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


def apply(x: jax.Array, p: dict[str, jax.Array]) -> jax.Array:
    """Warp, shift, add noise in the mel-power domain, mask: normalized log-mel ``(B, M, T)`` in and out."""
    x = warp_freq(x, p["warp_lo"], p["warp_w"])
    x = shift_time(x, p["shift"], p["silence"])  # (B, M, T)
    power = jnp.exp(x * p["std"] + p["mean"]) + p["noise"]  # (B, M, T) mel energy + noise
    x = (jnp.log(power) - p["mean"]) / p["std"]
    return x * p["keep"]  # SpecAugment: masked cells become 0, the training mean

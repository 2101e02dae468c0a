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


def apply(x: jax.Array, p: dict[str, jax.Array]) -> jax.Array:
    """Shift, add noise in the mel-power domain, mask: normalized log-mel ``(B, M, T)`` in and out."""
    x = shift_time(x, p["shift"], p["silence"])  # (B, M, T)
    power = jnp.exp(x * p["std"] + p["mean"]) + p["noise"]  # (B, M, T) mel energy + noise
    x = (jnp.log(power) - p["mean"]) / p["std"]
    return x * p["keep"]  # SpecAugment: masked cells become 0, the training mean

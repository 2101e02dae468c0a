"""Operations the JAX twin writes itself, with PyTorch's semantics (the torch twin's ``ops.py`` names
the same operations in PyTorch, so the twins' model code reads alike)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def _blocks(x: jax.Array, p: int) -> jax.Array:
    """Channels-last ``x`` cut into non-overlapping ``p``-windows: ``(B, H/p, p, W/p, p, C)`` or
    ``(B, L/p, p, C)``. Floor mode, as PyTorch's default: a remainder row/column is dropped."""
    b, *spatial, c = x.shape
    x = x[(slice(None),) + tuple(slice(0, s // p * p) for s in spatial)]
    shape = [b]
    for s in spatial:
        shape += [s // p, p]
    return x.reshape(*shape, c)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def max_pool(x: jax.Array, p: int) -> jax.Array:
    """Non-overlapping ``p`` max pool over the spatial axes of channels-last ``x``, PyTorch's semantics.

    Forward: a reshape and a max (XLA fuses it into the conv before it). Backward: the gradient
    goes to the *first* maximum of each window, as in PyTorch's ``max_pool2d``, where JAX's own
    ``max`` would split it between ties. Both are about speed on XLA:CPU: ``lax.reduce_window``'s
    backward (select-and-scatter) was the CNN step's largest cost, and ``max``'s tie-counting
    backward the next; one compare-and-select per window position is a single fused loop.
    """
    blocks = _blocks(x, p)
    return blocks.max(axis=tuple(range(2, blocks.ndim - 1, 2)))  # (B, H/p, W/p, C)


def _window_views(x: jax.Array, p: int) -> list[jax.Array]:
    """The ``p**d`` strided views ``(B, H/p, W/p, C)`` of the windows, in PyTorch's scan order
    (row-major within a window): ``blocks[:, :, i, :, j]`` for 2-D, ``blocks[:, :, i]`` for 1-D."""
    blocks = _blocks(x, p)
    offsets = [()]
    for _ in range((blocks.ndim - 2) // 2):
        offsets = [o + (i,) for o in offsets for i in range(p)]
    views = []
    for o in offsets:
        index: list = [slice(None)]
        for i in o:
            index += [slice(None), i]
        views.append(blocks[tuple(index)])
    return views


def _max_pool_fwd(x, p):
    views = _window_views(x, p)
    m = max_pool(x, p)  # (B, H/p, W/p, C)
    first = jnp.full(m.shape, len(views) - 1, jnp.int8)
    for k in reversed(range(len(views) - 1)):
        first = jnp.where(views[k] == m, jnp.int8(k), first)  # index of the first maximum
    return m, (first, x.shape)


def _max_pool_bwd(p, res, g):
    first, shape = res
    grads = [jnp.where(first == k, g, 0.0) for k in range(p ** (len(shape) - 2))]  # one per view
    # Back in the window layout: (B, H/p, p, W/p, p, C) <- views ordered row-major in the window.
    for axis in reversed(range(2, len(shape))):
        grads = [jnp.stack(grads[i : i + p], axis=axis) for i in range(0, len(grads), p)]
    dx = grads[0].reshape(shape[0], *(s // p * p for s in shape[1:-1]), shape[-1])
    pad = [(0, 0)] + [(0, s - s // p * p) for s in shape[1:-1]] + [(0, 0)]
    return (jnp.pad(dx, pad),)


max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)

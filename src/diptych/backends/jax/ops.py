"""Operations the JAX twin writes itself, with PyTorch's semantics (the torch twin's ``ops.py`` names
the same operations in PyTorch, so the twins' model and augmentation code reads alike): a max pool with
PyTorch's gradient at ties, ``affine_grid`` and ``grid_sample`` computed as torch's CPU kernels round, and
the LSTM recurrence with a hand-written gradient."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


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


# ----------------------------------------------------------------------------- image warps


def pixel_centres(n: int) -> np.ndarray:
    """Normalized coordinates of ``n`` pixel centres, ``(2k + 1) / n - 1`` (``align_corners=False``: the
    image spans ``[-1, 1]`` edge to edge). A constant of the shape, computed bit for bit as torch's
    ``F.affine_grid`` does: ``linspace(-1, 1, n)`` (from both ends, each value one fused multiply-add
    from a float32 step) times ``n - 1``, divided by ``n``, so that both twins sample the same points."""
    k = np.arange(n, dtype=np.float64)
    step = np.float64(np.float32(2) / np.float32(max(n - 1, 1)))
    line = np.where(k < n // 2, -1 + step * k, 1 - step * (n - 1 - k)).astype(np.float32)  # one rounding: FMA
    return line * np.float32(n - 1) / np.float32(n)


def affine_grid(theta: jax.Array, h: int, w: int) -> jax.Array:
    """``(B, H, W, 2)`` source ``(x, y)`` of each output pixel: ``theta @ (u, v, 1)``, like ``F.affine_grid``."""
    u, v = pixel_centres(w)[None, None, :], pixel_centres(h)[None, :, None]  # (1, 1, W), (1, H, 1)
    t = theta[:, :, :, None, None]  # (B, 2, 3, 1, 1)
    # The sum in bmm's order (u, v, then 1), so both twins round alike.
    return jnp.stack([t[:, r, 0] * u + t[:, r, 1] * v + t[:, r, 2] for r in (0, 1)], axis=-1)  # (B, H, W, 2)


def grid_sample(x: jax.Array, grid: jax.Array) -> jax.Array:
    """Bilinear sampling of ``x`` ``(B, C, H, W)`` at ``grid`` ``(B, H', W', 2)``, zeros outside, as torch's
    ``F.grid_sample(..., align_corners=False)``: normalized ``g`` is pixel ``((g + 1) n - 1) / 2``."""
    b, c, h, w = x.shape
    # Written as torch's CPU kernel writes it, so both twins round alike.
    ix = (grid[..., 0] + 1) * (w / 2) - 0.5  # (B, H', W') source column
    iy = (grid[..., 1] + 1) * (h / 2) - 0.5
    x0, y0 = jnp.floor(ix), jnp.floor(iy)
    fx, fy = ix - x0, iy - y0  # east and south weights; west and north are 1 minus them
    flat = x.reshape(b, c, h * w)
    out = 0.0
    for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):  # nw, ne, sw, se
        cx, cy = x0 + dx, y0 + dy
        weight = (fy if dy else 1 - fy) * (fx if dx else 1 - fx)  # (B, H', W') bilinear weight
        inside = (cx >= 0) & (cx <= w - 1) & (cy >= 0) & (cy <= h - 1)
        idx = (jnp.clip(cy, 0, h - 1) * w + jnp.clip(cx, 0, w - 1)).astype(jnp.int32).reshape(b, 1, -1)
        corner = jnp.take_along_axis(flat, jnp.broadcast_to(idx, (b, c, idx.shape[-1])), axis=2)
        out = out + corner.reshape(b, c, *ix.shape[1:]) * jnp.where(inside, weight, 0.0)[:, None]
    return out  # (B, C, H', W')


# ----------------------------------------------------------------------------- the LSTM recurrence

# Time steps per iteration of the compiled scan loop (benchmarks/scan_unroll.py measures the choice).
SCAN_UNROLL = 1


def _lstm_cell(a: jax.Array, c: jax.Array):
    """PyTorch's LSTM cell after the matmuls: pre-activations ``a`` ``(B, 4H)`` (gates i, f, g, o),
    cell ``c`` ``(B, H)`` -> (``h``, ``c``, the four gate activations, each ``(B, H)``)."""
    i, f, g, o = jnp.split(a, 4, axis=-1)
    i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
    c = f * c + i * g
    return o * jnp.tanh(c), c, (i, f, g, o)


def _lstm_forward(xi, w_hh, h0, c0, reverse):
    def step(carry, xt):  # xt (B, 4H)
        h, c = carry
        h, c, gates = _lstm_cell(xt + h @ w_hh, c)
        return (h, c), (h, c, gates)

    (h, c), (hs, cs, gates) = jax.lax.scan(step, (h0, c0), xi, reverse=reverse, unroll=SCAN_UNROLL)
    return (hs, h, c), (w_hh, h0, c0, hs, cs, gates)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def lstm_scan(xi, w_hh, h0, c0, reverse=False):
    """The LSTM recurrence over time-major input projections ``xi`` ``(T, B, 4H)`` (``x W_ih + b_ih + b_hh``:
    both biases enter every step's sum unchanged, so they are added once, outside the loop)
    from ``(h0, c0)`` ``(B, H)``: -> (``hs`` ``(T, B, H)``, last ``h``, last ``c``).

    Its gradient is written out (``_lstm_backward``) instead of left to autodiff, for speed on
    XLA:CPU (benchmarks/rnn_gap.py): the backward loop carries only ``dh @ W_hh^T``, and the
    weight gradient ``dW_hh`` is one matmul over all steps after the loop, where autodiff
    accumulates a small ``h^T @ da`` into it at every step; the forward loop saves four arrays
    per step (h, c and the gates) where autodiff saved a dozen. Same maths as autodiff (checked
    against it in tests/test_models.py), only summed in another order.
    """
    return _lstm_forward(xi, w_hh, h0, c0, reverse)[0]


def _lstm_backward(reverse, res, cts):
    w_hh, h0, c0, hs, cs, (i, f, g, o) = res
    dhs, dh, dc = cts  # (T, B, H), (B, H), (B, H)
    # The state each step started from: the previous step's (the next one's when reversed), or the initial one.
    if reverse:
        h_prev, c_prev = jnp.concatenate([hs[1:], h0[None]]), jnp.concatenate([cs[1:], c0[None]])
    else:
        h_prev, c_prev = jnp.concatenate([h0[None], hs[:-1]]), jnp.concatenate([c0[None], cs[:-1]])

    def step(carry, inputs):
        dh, dc = carry
        dh_out, c, cp, i, f, g, o = inputs
        dh = dh + dh_out
        tc = jnp.tanh(c)
        dc = dc + dh * o * (1 - tc * tc)
        # d/d(pre-activation) of each gate: sigmoid' = s (1 - s), tanh' = 1 - t^2.
        da = jnp.concatenate(
            [dc * g * i * (1 - i), dc * cp * f * (1 - f), dc * i * (1 - g * g), dh * tc * o * (1 - o)], -1
        )
        return (da @ w_hh.T, dc * f), da  # (B, H), (B, H); da (B, 4H)

    (dh0, dc0), da = jax.lax.scan(
        step, (dh, dc), (dhs, cs, c_prev, i, f, g, o), reverse=not reverse, unroll=SCAN_UNROLL
    )  # da (T, B, 4H)
    dw_hh = jnp.einsum("tbh,tbg->hg", h_prev, da)  # all steps at once: (H, 4H)
    return da, dw_hh, dh0, dc0  # d xi = d a: xi enters the sum as it is


lstm_scan.defvjp(lambda xi, w_hh, h0, c0, reverse: _lstm_forward(xi, w_hh, h0, c0, reverse), _lstm_backward)

"""Flax NNX layers that compute exactly what their PyTorch namesakes compute (imports jax; use in NNX ports).

Stock Flax differs from torch in three places that no weight conversion can fix:

* ``nnx.LSTMCell`` / ``nnx.OptimizedLSTMCell`` / ``nnx.GRUCell`` have one bias per gate where torch has
  two (``b_ih`` and ``b_hh``). The forward pass and the gradients agree once the biases are summed,
  but each optimizer step moves torch's sum twice as far. ``nnx.GRUCell`` also has no ``b_hn`` (torch
  computes ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``).
* ``nnx.BatchNorm`` stores the biased batch variance in its running average; torch stores the
  unbiased one (``n / (n - 1)`` times larger), so the running statistics part after a training step.

The cells below are ``nnx.RNNCellBase`` cells (use them in ``nnx.RNN`` / ``nnx.Bidirectional``) with
torch's parameters, gate order and maths; :class:`BatchNorm` is ``nnx.BatchNorm`` with torch's
running-variance update. ``diptych.port.convert`` knows them, and converts them losslessly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

_GATES = {"lstm": 4, "gru": 3, "rnn": 1}


class _TorchCell(nnx.RNNCellBase):
    kind = "rnn"

    def __init__(self, in_features: int, hidden_features: int, *, bias: bool = True, rngs: nnx.Rngs):
        g, h = _GATES[self.kind], hidden_features
        bound = 1.0 / h**0.5  # torch's init: U(-1/sqrt(H), 1/sqrt(H)) for every tensor
        init = jax.nn.initializers.uniform(2 * bound)

        def u(shape):
            return nnx.Param(init(rngs.params(), shape) - bound)

        self.in_features, self.hidden_features = in_features, hidden_features
        self.w_ih = u((in_features, g * h))  # (I, G*H): torch's weight_ih_l{k}.T
        self.w_hh = u((h, g * h))  # (H, G*H)
        self.b_ih = u((g * h,)) if bias else nnx.data(None)
        self.b_hh = u((g * h,)) if bias else nnx.data(None)

    def _proj(self, x, w, b):
        y = x @ w[...]
        return y if b is None else y + b[...]

    def initialize_carry(self, input_shape, rngs=None):
        return jnp.zeros((*input_shape[:-1], self.hidden_features), jnp.float32)

    @property
    def num_feature_axes(self) -> int:
        return 1


class LSTMCell(_TorchCell):
    """torch.nn.LSTM's cell: gates i, f, g, o; carry ``(c, h)`` as in ``nnx.LSTMCell``."""

    kind = "lstm"

    def __call__(self, carry, x):
        c, h = carry
        y = self._proj(x, self.w_ih, self.b_ih) + self._proj(h, self.w_hh, self.b_hh)  # (B, 4H)
        i, f, g, o = jnp.split(y, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (c, h), h

    def initialize_carry(self, input_shape, rngs=None):
        z = super().initialize_carry(input_shape)
        return z, z


class GRUCell(_TorchCell):
    """torch.nn.GRU's cell: gates r, z, n with ``r`` applied to ``W_hn h + b_hn``."""

    kind = "gru"

    def __call__(self, h, x):
        xr, xz, xn = jnp.split(self._proj(x, self.w_ih, self.b_ih), 3, axis=-1)
        hr, hz, hn = jnp.split(self._proj(h, self.w_hh, self.b_hh), 3, axis=-1)
        r, z = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xz + hz)
        n = jnp.tanh(xn + r * hn)
        h = (1 - z) * n + z * h
        return h, h


class RNNCell(_TorchCell):
    """torch.nn.RNN's cell: ``h' = tanh(W_ih x + b_ih + W_hh h + b_hh)``."""

    kind = "rnn"

    def __call__(self, h, x):
        h = jnp.tanh(self._proj(x, self.w_ih, self.b_ih) + self._proj(h, self.w_hh, self.b_hh))
        return h, h


class BatchNorm(nnx.BatchNorm):
    """``nnx.BatchNorm`` whose running variance is updated with the unbiased batch variance, as torch's.

    Takes torch's arguments: ``BatchNorm(C, momentum=0.1, epsilon=1e-5)`` means what
    ``torch.nn.BatchNorm2d(C, momentum=0.1, eps=1e-5)`` means (Flax's ``momentum`` is ``1 - 0.1``).
    """

    def __init__(self, num_features: int, *, momentum: float = 0.1, epsilon: float = 1e-5, rngs: nnx.Rngs, **kw):
        super().__init__(
            num_features, momentum=1.0 - momentum, epsilon=epsilon, use_fast_variance=False, rngs=rngs, **kw
        )

    def __call__(self, x, use_running_average: bool | None = None, *, mask=None):
        use_ra = use_running_average if use_running_average is not None else self.use_running_average
        if use_ra:
            return super().__call__(x, use_running_average=True)
        axes = tuple(i for i in range(x.ndim) if i != x.ndim - 1)  # channels-last: every axis but the last
        n = 1
        for a in axes:
            n *= x.shape[a]
        mean, var = x.mean(axes), x.var(axes)
        m = self.momentum
        new_mean = m * self.mean[...] + (1 - m) * jax.lax.stop_gradient(mean)
        new_var = m * self.var[...] + (1 - m) * jax.lax.stop_gradient(var) * (n / max(n - 1, 1))
        y = (x - mean) * jax.lax.rsqrt(var + self.epsilon)
        if self.scale is not None:
            y = y * self.scale[...]
        if self.bias is not None:
            y = y + self.bias[...]
        self.mean[...] = new_mean
        self.var[...] = new_var
        return y


class _Recurrent(nnx.Module):
    """A stacked, optionally bidirectional recurrent layer with ``torch.nn.LSTM``/``GRU``/``RNN``'s arguments,
    call and outputs: ``(output, h_n)`` (``(output, (h_n, c_n))`` for an LSTM), ``h_n`` ``(layers * D, B, H)``.
    Its cells sit at torch's names (``l0``, ``l0_reverse``, ``l1``...), so ``diptych.port.convert`` pairs them
    with the torch layer's ``weight_ih_l0``... tensors by name."""

    cell = RNNCell
    kind = "rnn"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        bidirectional: bool = False,
        nonlinearity: str = "tanh",
        *,
        rngs: nnx.Rngs,
    ):
        self.hidden_size, self.num_layers, self.batch_first = hidden_size, num_layers, batch_first
        self.dirs, self.nonlinearity = ("", "_reverse")[: 1 + bidirectional], nonlinearity
        for layer in range(num_layers):
            fan_in = input_size if layer == 0 else hidden_size * len(self.dirs)
            for sfx in self.dirs:
                setattr(self, f"l{layer}{sfx}", self.cell(fan_in, hidden_size, bias=bias, rngs=rngs))

    def _scan(self, cell, x, carry, reverse):
        """``x`` ``(B, T, F)`` -> (outputs ``(B, T, H)``, final carry); the input projection outside the loop."""
        w_hh = cell.w_hh[...]
        b_hh = 0.0 if cell.b_hh is None else cell.b_hh[...]
        xi = jnp.swapaxes(x, 0, 1) @ cell.w_ih[...] + (0.0 if cell.b_ih is None else cell.b_ih[...])
        act = jax.nn.relu if self.nonlinearity == "relu" else jnp.tanh

        def step(carry, xt):
            if self.kind == "lstm":
                h, c = carry
                i, f, g, o = jnp.split(xt + h @ w_hh + b_hh, 4, axis=-1)
                c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
                h = jax.nn.sigmoid(o) * jnp.tanh(c)
                return (h, c), h
            gh = carry @ w_hh + b_hh
            if self.kind == "rnn":
                h = act(xt + gh)
                return h, h
            xr, xz, xn = jnp.split(xt, 3, axis=-1)
            hr, hz, hn = jnp.split(gh, 3, axis=-1)
            r, z = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xz + hz)
            h = (1 - z) * jnp.tanh(xn + r * hn) + z * carry
            return h, h

        carry, ys = jax.lax.scan(step, carry, xi, reverse=reverse)
        return jnp.swapaxes(ys, 0, 1), carry

    def __call__(self, x, hx=None):
        x = x if self.batch_first else jnp.swapaxes(x, 0, 1)  # (B, T, F)
        n = self.num_layers * len(self.dirs)
        zeros = jnp.zeros((n, x.shape[0], self.hidden_size), x.dtype)
        if self.kind == "lstm":
            h0, c0 = (zeros, zeros) if hx is None else hx
        else:
            h0, c0 = (zeros if hx is None else hx), None
        hs, cs = [], []
        for layer in range(self.num_layers):
            outs = []
            for d, sfx in enumerate(self.dirs):
                k = layer * len(self.dirs) + d
                carry = (h0[k], c0[k]) if self.kind == "lstm" else h0[k]
                ys, carry = self._scan(getattr(self, f"l{layer}{sfx}"), x, carry, reverse=d == 1)
                outs.append(ys)
                hs.append(carry[0] if self.kind == "lstm" else carry)
                cs.append(carry[1] if self.kind == "lstm" else None)
            x = jnp.concatenate(outs, axis=-1) if len(outs) > 1 else outs[0]  # (B, T, D*H)
        out = x if self.batch_first else jnp.swapaxes(x, 0, 1)
        h_n = jnp.stack(hs)  # (layers * D, B, H)
        return (out, (h_n, jnp.stack(cs))) if self.kind == "lstm" else (out, h_n)


class LSTM(_Recurrent):
    """``torch.nn.LSTM`` in NNX (cells: :class:`LSTMCell`)."""

    cell, kind = LSTMCell, "lstm"


class GRU(_Recurrent):
    """``torch.nn.GRU`` in NNX (cells: :class:`GRUCell`)."""

    cell, kind = GRUCell, "gru"


class RNN(_Recurrent):
    """``torch.nn.RNN`` in NNX (cells: :class:`RNNCell`; ``nonlinearity="relu"`` as torch's)."""

    cell, kind = RNNCell, "rnn"

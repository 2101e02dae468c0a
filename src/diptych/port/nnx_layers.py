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

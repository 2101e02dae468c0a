"""Flax NNX models for the neutral specs in :mod:`diptych.specs`.

Idiomatic JAX layout: channels-last inputs (``(B, H, W, 1)`` / ``(B, L, 1)``), kernels
``(kH, kW, I, O)``, dense kernels ``(in, out)``. :mod:`diptych.backends.jax.weights` does the
transposes to and from the canonical PyTorch layout. Initialization draws from the same
distributions as PyTorch's defaults: weights ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (that is
Kaiming-uniform with a=sqrt(5), i.e. variance scaling 1/3, fan-in, uniform), biases likewise.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from diptych.backends.jax import ops, transformer
from diptych.backends.jax.ops import max_pool
from diptych.specs import GATES, CharLMSpec, CNNSpec, CRNNSpec, MLPSpec, ModelSpec, RNNSpec

_kernel_init = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def _bias_init(fan_in: int):
    bound = 1.0 / fan_in**0.5

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def _linear(fan_in: int, fan_out: int, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(fan_in, fan_out, kernel_init=_kernel_init, bias_init=_bias_init(fan_in), rngs=rngs)


def add_head(module: nnx.Module, dims: list[int], rngs: nnx.Rngs) -> None:
    """Give ``module`` the fully connected layers ``fc1 .. fcN`` of the chain ``dims`` (canonical names)."""
    module.num_fc = len(dims) - 1
    for j, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:]), start=1):
        setattr(module, f"fc{j}", _linear(fan_in, fan_out, rngs))


def run_head(module: nnx.Module, x: jax.Array) -> jax.Array:
    """``(B, D)`` -> Linear -> ReLU -> ... -> Linear -> ``(B, classes)``."""
    for j in range(1, module.num_fc + 1):
        x = getattr(module, f"fc{j}")(x)
        if j < module.num_fc:
            x = jax.nn.relu(x)
    return x


class MLP(nnx.Module):
    def __init__(self, spec: MLPSpec, *, rngs: nnx.Rngs):
        self.spec = spec  # weights.py reads the canonical shapes from it
        add_head(self, [spec.in_features, *spec.hidden, spec.num_classes], rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return run_head(self, x.reshape(x.shape[0], -1))  # (B, D) -> (B, classes)


def add_convs(module: nnx.Module, spec: CNNSpec, rngs: nnx.Rngs) -> None:
    """Give ``module`` the layers ``conv1, conv2, ...`` of ``spec`` (canonical names)."""
    cin = spec.in_channels
    for i, c in enumerate(spec.convs, start=1):
        fan_in = cin * c.kernel**spec.dims
        setattr(
            module,
            f"conv{i}",
            nnx.Conv(
                cin,
                c.out_channels,
                kernel_size=(c.kernel,) * spec.dims,
                strides=(c.stride,) * spec.dims,
                padding=[(c.padding, c.padding)] * spec.dims,
                kernel_init=_kernel_init,
                bias_init=_bias_init(fan_in),
                rngs=rngs,
            ),
        )
        cin = c.out_channels


def run_convs(module: nnx.Module, spec: CNNSpec, x: jax.Array) -> jax.Array:
    """``(B, H, W)`` or ``(B, L)`` (one channel) or ``(B, C, H, W)`` -> conv -> ReLU [-> max pool] per layer
    -> ``(B, H', W', C')``.

    The ReLU is applied after the pool: max and ReLU commute, and so do their gradients (the first
    maximum of a window is the first maximum after ReLU whenever it is positive; otherwise both
    gradients are zero), so this is the same function with a p*p times smaller ReLU.
    """
    x = x[..., None] if x.ndim == spec.dims + 1 else jnp.moveaxis(x, 1, -1)  # (B, H, W, C) or (B, L, C)
    for i, c in enumerate(spec.convs, start=1):
        x = getattr(module, f"conv{i}")(x)  # (B, H', W', C)
        if c.pool > 1:
            x = max_pool(x, c.pool)  # (B, H'/p, W'/p, C)
        x = jax.nn.relu(x)
    return x


class ConvNet(nnx.Module):
    """Conv stack (1-D or 2-D, channels-last) -> flatten (H, W, C) -> MLP head."""

    def __init__(self, spec: CNNSpec, *, rngs: nnx.Rngs):
        self.spec = spec
        add_convs(self, spec, rngs)
        add_head(self, [spec.flat_features(), *spec.hidden, spec.num_classes], rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = run_convs(self, self.spec, x)  # (B, H', W', C)
        return run_head(self, x.reshape(x.shape[0], -1))  # (B, H*W*C), channels-last (weights.py permutes fc1)


class RecurrentLayer(nnx.Module):
    """One direction of one recurrent layer: PyTorch's maths and gate order, JAX layout.

    Kernels are ``(in, G*H)`` and ``(H, G*H)`` (``x @ W``), with both of PyTorch's biases kept,
    because the GRU's candidate gate needs ``b_hn`` inside ``r * (h W_hn + b_hn)``. For all steps
    at once, the input projection ``x @ W_ih`` is one batched matmul outside the loop (on the
    time-major input, which is smaller than its projection to transpose); the ``lax.scan``
    carries only the recurrence ``h @ W_hh`` (one fused matmul for all gates). The LSTM's scan
    has a hand-written gradient (:func:`diptych.backends.jax.ops.lstm_scan`).
    Initialization as PyTorch: every tensor ``U(-1/sqrt(H), 1/sqrt(H))``.
    """

    def __init__(self, cell: str, in_size: int, hidden: int, *, rngs: nnx.Rngs):
        self.cell, self.hidden = cell, hidden
        g, bound = GATES[cell], 1.0 / hidden**0.5

        def init(shape):
            return nnx.Param(jax.random.uniform(rngs.params(), shape, jnp.float32, -bound, bound))

        self.w_ih, self.w_hh = init((in_size, g * hidden)), init((hidden, g * hidden))
        self.b_ih, self.b_hh = init((g * hidden,)), init((g * hidden,))

    def initial_carry(self, batch: int, dtype=jnp.float32):
        """Zeros: ``h`` ``(B, H)``, or ``(h, c)`` for an LSTM (PyTorch's default initial state)."""
        h0 = jnp.zeros((batch, self.hidden), dtype)
        return (h0, h0) if self.cell == "lstm" else h0

    def __call__(self, x: jax.Array, reverse: bool = False, carry=None):
        """``x`` ``(B, T, F)`` -> (outputs ``(B, T, H)``, final carry: ``h`` ``(B, H)`` or ``(h, c)``).

        ``carry`` continues from a previous window (truncated BPTT); ``None`` starts from zeros.
        """
        xi = jnp.swapaxes(x, 0, 1) @ self.w_ih[...] + self.b_ih[...]  # (T, B, G*H)
        w_hh, b_hh, cell = self.w_hh[...], self.b_hh[...], self.cell
        carry = self.initial_carry(x.shape[0], x.dtype) if carry is None else carry
        if cell == "lstm":
            ys, h, c = ops.lstm_scan(xi + b_hh, w_hh, *carry, reverse)  # ys (T, B, H)
            return jnp.swapaxes(ys, 0, 1), (h, c)

        def step(h, xt):  # xt (B, G*H)
            gh = h @ w_hh + b_hh  # (B, G*H)
            if cell == "rnn":
                h = jnp.tanh(xt + gh)
                return h, h
            xr, xz, xn = jnp.split(xt, 3, axis=-1)
            hr, hz, hn = jnp.split(gh, 3, axis=-1)
            r, z = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xz + hz)
            n = jnp.tanh(xn + r * hn)
            h = (1 - z) * n + z * h
            return h, h

        carry, ys = jax.lax.scan(step, carry, xi, reverse=reverse, unroll=ops.SCAN_UNROLL)  # ys (T, B, H)
        return jnp.swapaxes(ys, 0, 1), carry


def _last_hidden(carry):
    return carry[0] if isinstance(carry, tuple) else carry  # an LSTM's carry is (h, c)


class RecurrentNet(nnx.Module):
    """Stacked (optionally bidirectional) recurrent layers -> last hidden state -> Linear."""

    def __init__(self, spec: RNNSpec, *, rngs: nnx.Rngs):
        self.spec = self.rnn_spec = spec
        d = len(spec.directions())
        for layer in range(spec.num_layers):
            fan_in = spec.input_size if layer == 0 else d * spec.hidden
            for sfx in spec.directions():
                setattr(self, f"rnn_l{layer}{sfx}", RecurrentLayer(spec.cell, fan_in, spec.hidden, rngs=rngs))
        self.fc1 = _linear(d * spec.hidden, spec.num_classes, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        spec = self.rnn_spec
        x = x.reshape(x.shape[0], spec.seq_len, spec.input_size)  # (B, T, F)
        for layer in range(spec.num_layers):
            out, carry = getattr(self, f"rnn_l{layer}")(x)
            last = _last_hidden(carry)  # (B, H)
            if spec.bidirectional:  # the reverse direction's last state is the one at t = 0
                out_r, carry_r = getattr(self, f"rnn_l{layer}_reverse")(x, reverse=True)
                last_r = _last_hidden(carry_r)
                out, last = jnp.concatenate([out, out_r], -1), jnp.concatenate([last, last_r], -1)
            x = out  # (B, T, D*H)
        return self.fc1(last)  # (B, classes)


class CharLM(nnx.Module):
    """Embedding -> stacked :class:`RecurrentLayer` scans -> Linear at every step.

    ``__call__(x, state)`` takes ids ``(B, T)`` and the previous window's state (a tuple with one
    carry per layer; ``None`` for zeros) and returns logits ``(B, T, V)`` and the new state.
    Embeddings start ``N(0, 1)``, as ``torch.nn.Embedding``'s do.
    """

    def __init__(self, spec: CharLMSpec, *, rngs: nnx.Rngs):
        self.spec = spec
        self.embed = nnx.Embed(spec.vocab, spec.embed, embedding_init=nnx.initializers.normal(1.0), rngs=rngs)
        for layer in range(spec.num_layers):
            fan_in = spec.embed if layer == 0 else spec.hidden
            setattr(self, f"rnn_l{layer}", RecurrentLayer(spec.cell, fan_in, spec.hidden, rngs=rngs))
        self.fc1 = _linear(spec.hidden, spec.vocab, rngs)

    def initial_state(self, batch: int) -> tuple:
        return tuple(getattr(self, f"rnn_l{k}").initial_carry(batch) for k in range(self.spec.num_layers))

    def __call__(self, x: jax.Array, state=None):
        h = self.embed(x)  # (B, T, E)
        state = self.initial_state(x.shape[0]) if state is None else state
        new = []
        for layer, carry in enumerate(state):
            h, carry = getattr(self, f"rnn_l{layer}")(h, carry=carry)  # (B, T, H)
            new.append(carry)
        return self.fc1(h), tuple(new)  # (B, T, V)


class CRNN(RecurrentNet):
    """2-D conv stack over a spectrogram (channels-last), then the recurrent net over its time axis."""

    def __init__(self, spec: CRNNSpec, *, rngs: nnx.Rngs):
        super().__init__(spec.rnn_spec(), rngs=rngs)
        self.spec, self.conv_spec = spec, spec.conv_spec()
        add_convs(self, self.conv_spec, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = run_convs(self, self.conv_spec, x)  # (B, H', W', C): W' is time
        x = x.transpose(0, 2, 3, 1).reshape(x.shape[0], -1)  # (B, W' * C * H'): the torch twin's order
        return super().__call__(x)  # (B, classes)


MODELS = {
    "mlp": MLP,
    "cnn": ConvNet,
    "rnn": RecurrentNet,
    "charlm": CharLM,
    "crnn": CRNN,
    "gpt": transformer.GPT,
    "vit": transformer.ViT,
}  # by spec.kind


def build_model(spec: ModelSpec, seed: int = 0) -> nnx.Module:
    """Build the twin of ``spec`` with weights drawn from ``nnx.Rngs(params=seed)``."""
    return MODELS[spec.kind](spec, rngs=nnx.Rngs(params=seed))


def num_params(model: nnx.Module) -> int:
    return sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))

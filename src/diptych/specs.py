"""Model specs: frozen, framework-neutral descriptions that each twin builds its own idiomatic objects
from (:mod:`diptych.backends.torch.models`, :mod:`diptych.backends.jax.models`). A spec knows its shapes,
its canonical parameter names and its size; nothing here imports torch or jax. The augmentation specs
are in :mod:`diptych.augment_specs`.

    >>> MLPSpec(in_features=40, hidden=(100,)).param_shapes()
    {'fc1.weight': (100, 40), 'fc1.bias': (100,), 'fc2.weight': (10, 100), 'fc2.bias': (10,)}
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

# ----------------------------------------------------------------------------- models


class _Spec:
    """What every model spec answers besides its shapes."""

    carries_state = False  # True: the model takes and returns a recurrent state across batches (TBPTT)
    decodes_with_cache = False  # True: a transformer LM, read through a key/value cache (language.cached_sequence)
    # Fields that `--set` refuses (diptych.overrides): the kind, and what the data decides.
    fixed = ("kind", "vocab", "num_classes", "in_features", "in_size", "in_channels", "dims", "sized_by_data")

    def problem(self) -> str | None:
        """Why this model cannot be built, in a few words, or ``None`` (``--set`` refuses such a model)."""
        return None

    def sized_like(self, params: dict) -> "_Spec":
        """This spec with any size that the weights decide filled in from ``params`` (a language
        model's vocabulary); other specs come back unchanged."""
        return self

    def with_vocab(self, vocab: int) -> "_Spec":
        """This spec for a vocabulary of ``vocab`` tokens (unchanged: the model reads no tokens)."""
        return self


@dataclass(frozen=True)
class MLPSpec(_Spec):
    """Flatten -> [Linear -> ReLU] * len(hidden) -> Linear.

    Canonical parameter names: ``fc1.weight`` ``(hidden[0], in_features)``, ``fc1.bias``, ...
    """

    in_features: int
    hidden: tuple[int, ...]
    num_classes: int = 10
    kind: str = "mlp"

    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input sample (any shape with ``in_features`` elements works too)."""
        return (self.in_features,)

    def layer_sizes(self) -> list[tuple[int, int]]:
        dims = [self.in_features, *self.hidden, self.num_classes]
        return list(zip(dims[:-1], dims[1:]))

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return _fc_shapes([self.in_features, *self.hidden, self.num_classes])

    def num_params(self) -> int:
        return _count(self.param_shapes())

    def describe(self) -> str:
        return "MLP " + "-".join(str(d) for d in [self.in_features, *self.hidden, self.num_classes])


@dataclass(frozen=True)
class ConvSpec:
    """One conv layer: Conv(out_channels, kernel, stride, padding) -> ReLU [-> MaxPool(pool)]."""

    out_channels: int
    kernel: int
    stride: int = 1
    padding: int = 0
    pool: int = 1  # 1 means no pooling


@dataclass(frozen=True)
class CNNSpec(_Spec):
    """A stack of convs (1-D or 2-D), flattened into an MLP head.

    Input is ``(B, L)`` for ``dims=1`` or ``(B, H, W)`` for ``dims=2`` (one channel); ``in_size`` is
    an int for a square (cubic) input or a tuple ``(H, W)`` for any other, e.g. a log-mel image.
    Kernels, strides and pools stay square.
    Canonical names: ``conv{i}.weight`` in PyTorch layout ``(O, I, kH, kW)`` / ``(O, I, k)``,
    then ``fc{j}.weight`` ``(out, in)``, where ``fc1``'s input is flattened in PyTorch's
    channel-major ``(C, H, W)`` order.
    """

    dims: int
    in_size: int | tuple[int, ...]
    convs: tuple[ConvSpec, ...]
    hidden: tuple[int, ...] = ()
    num_classes: int = 10
    in_channels: int = 1
    kind: str = "cnn"
    sized_by_data: bool = False  # True: input size, channels and classes come from the data (own images)

    def sized_like(self, params: dict) -> "CNNSpec":
        """A data-sized CNN (``sized_by_data``) with its channels, classes and (square) input side read
        from the weights: the smallest side whose features fit ``fc1``. Other CNNs come back unchanged."""
        last = f"fc{len(self.hidden) + 1}.weight"
        if not self.sized_by_data or "conv1.weight" not in params or last not in params or "fc1.weight" not in params:
            return self
        spec = dataclasses.replace(self, in_channels=params["conv1.weight"].shape[1], num_classes=params[last].shape[0])
        flat = params["fc1.weight"].shape[1]
        fits = (dataclasses.replace(spec, in_size=n) for n in range(1, 1025))
        return next((s for s in fits if s.flat_features() == flat), spec)

    def problem(self) -> str | None:
        shape = self.input_shape() if self.dims in (1, 2) else ()  # (checked first: a huge dims is no shape)
        if len(shape) != self.dims or min(shape, default=0) < 1 or self.in_channels < 1:
            return f"the input {self.in_size} with {self.in_channels} channel(s) is not a {self.dims}-D image"
        if any(c.kernel < 1 or c.stride < 1 or c.pool < 1 or c.padding < 0 for c in self.convs):
            return "every conv needs kernel, stride and pool >= 1 and padding >= 0"
        for i, (c, out) in enumerate(zip(self.convs, self.conv_output_sizes()), start=1):
            if min(out) < 1 or min(out) // c.pool < 1:
                return f"conv{i} shrinks the {'x'.join(map(str, shape))} input to nothing: use fewer convs"
        return None

    def input_shape(self) -> tuple[int, ...]:
        """``(L,)`` or ``(H, W)``: one sample, without the channel axis."""
        return tuple(self.in_size) if isinstance(self.in_size, tuple) else (self.in_size,) * self.dims

    def conv_output_sizes(self) -> list[tuple[int, ...]]:
        """Spatial size after each conv (before its pool): ``out = (in + 2p - k) // s + 1`` per axis."""
        sizes, size = [], self.input_shape()
        for c in self.convs:
            out = tuple((n + 2 * c.padding - c.kernel) // c.stride + 1 for n in size)
            sizes.append(out)
            size = tuple(n // c.pool for n in out)
        return sizes

    def feature_shape(self) -> tuple[int, ...]:
        """Shape ``(C, *spatial)`` of the last conv block's output."""
        if not self.convs:
            return (self.in_channels,) + self.input_shape()
        return (self.convs[-1].out_channels,) + tuple(n // self.convs[-1].pool for n in self.conv_output_sizes()[-1])

    def flat_features(self) -> int:
        n = 1
        for d in self.feature_shape():
            n *= d
        return n

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {}
        cin = self.in_channels
        for i, c in enumerate(self.convs, start=1):
            shapes[f"conv{i}.weight"] = (c.out_channels, cin) + (c.kernel,) * self.dims
            shapes[f"conv{i}.bias"] = (c.out_channels,)
            cin = c.out_channels
        return shapes | _fc_shapes([self.flat_features(), *self.hidden, self.num_classes])

    def num_params(self) -> int:
        return _count(self.param_shapes())

    def describe(self) -> str:
        return f"CNN{self.dims}d {_describe_convs(self.convs)} fc{self.hidden + (self.num_classes,)}"


GATES = {"rnn": 1, "lstm": 4, "gru": 3}  # gate blocks per cell, in PyTorch's order: -, (i,f,g,o), (r,z,n)


@dataclass(frozen=True)
class RNNSpec(_Spec):
    """Sequence classifier: the input ``(B, T * F)`` is read as ``T`` steps of ``F`` features, run
    through stacked recurrent layers (Elman tanh RNN, LSTM or GRU, with PyTorch's maths and gate
    order), and the last step's hidden state (both directions' if bidirectional) goes to a Linear.

    Canonical names are PyTorch's ``nn.RNN/LSTM/GRU`` ones under ``rnn.``:
    ``rnn.weight_ih_l{k}[_reverse]`` ``(G*H, in)``, ``rnn.weight_hh_l{k}`` ``(G*H, H)``,
    ``rnn.bias_ih_l{k}``, ``rnn.bias_hh_l{k}`` ``(G*H,)``; then ``fc1`` ``(classes, D*H)``.
    """

    cell: str
    input_size: int  # F: features per step
    seq_len: int  # T: steps
    hidden: int
    num_layers: int = 1
    bidirectional: bool = False
    num_classes: int = 10
    kind: str = "rnn"

    def input_shape(self) -> tuple[int, ...]:
        return (self.seq_len * self.input_size,)

    def directions(self) -> tuple[str, ...]:
        return ("", "_reverse") if self.bidirectional else ("",)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = _rnn_shapes(self.cell, self.input_size, self.hidden, self.num_layers, self.directions())
        return shapes | _fc_shapes([len(self.directions()) * self.hidden, self.num_classes])

    def num_params(self) -> int:
        return _count(self.param_shapes())

    def describe(self) -> str:
        bi = "bi" if self.bidirectional else ""
        return f"{bi}{self.cell.upper()} {self.num_layers}x{self.hidden} over {self.seq_len} steps of {self.input_size}"


class TokenLM:
    """A language model over token ids ``(B, seq_len)``: ``V`` comes from the corpus, or from the weights."""

    def with_vocab(self, vocab: int):
        return dataclasses.replace(self, vocab=vocab)

    def sized_like(self, params: dict):
        return self.with_vocab(params["embed.weight"].shape[0]) if "embed.weight" in params else self

    def input_shape(self) -> tuple[int, ...]:
        return (self.seq_len,)  # token ids


@dataclass(frozen=True)
class CharLMSpec(TokenLM, _Spec):
    """Character language model: ``Embedding(V, E)`` -> stacked unidirectional recurrent layers
    -> ``Linear(H, V)`` at every step, giving next-character logits ``(B, T, V)``.

    The registry holds ``vocab=0``; the driver fills ``V`` in. ``seq_len`` is the truncated-BPTT window ``T``.
    Canonical names: ``embed.weight`` ``(V, E)``, ``rnn.*`` as in :class:`RNNSpec`, ``fc1``.
    """

    cell: str
    embed: int
    hidden: int
    num_layers: int = 1
    seq_len: int = 64
    vocab: int = 0
    kind: str = "charlm"
    carries_state = True

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {"embed.weight": (self.vocab, self.embed)}
        shapes |= _rnn_shapes(self.cell, self.embed, self.hidden, self.num_layers, ("",))
        return shapes | _fc_shapes([self.hidden, self.vocab])

    def num_params(self) -> int:
        return _count(self.param_shapes())

    def describe(self) -> str:
        v = self.vocab or "V"
        cell = f"{self.cell.upper()} {self.num_layers}x{self.hidden}"
        return f"char {cell}, embed {self.embed}, vocab {v}, TBPTT {self.seq_len}"


@dataclass(frozen=True)
class CRNNSpec(_Spec):
    """Conv front end + recurrent layers over time, for spectrograms ``(B, H=mel bands, W=frames)``.

    The 2-D conv stack (as :class:`CNNSpec`) gives ``(B, C, H', W')``; each of the ``W'`` time steps
    becomes one vector of ``C * H'`` features (channel-major, ``(C, H')`` flattened), read by the
    recurrent layers as in :class:`RNNSpec`; the last step's state goes to ``fc1``. Canonical names:
    ``conv{i}.*`` as in a CNN, then ``rnn.*`` and ``fc1.*`` as in an RNN.
    """

    in_size: tuple[int, int]
    convs: tuple[ConvSpec, ...]
    cell: str = "gru"
    hidden: int = 64
    num_layers: int = 1
    bidirectional: bool = False
    num_classes: int = 10
    in_channels: int = 1
    dims: int = 2
    kind: str = "crnn"

    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.in_size)

    def problem(self) -> str | None:
        return self.conv_spec().problem()

    def conv_spec(self) -> CNNSpec:
        return CNNSpec(dims=2, in_size=tuple(self.in_size), convs=self.convs, in_channels=self.in_channels)

    def rnn_spec(self) -> RNNSpec:
        c, h, w = self.conv_spec().feature_shape()
        return RNNSpec(
            self.cell,
            input_size=c * h,
            seq_len=w,
            hidden=self.hidden,
            num_layers=self.num_layers,
            bidirectional=self.bidirectional,
            num_classes=self.num_classes,
        )

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        convs = {k: v for k, v in self.conv_spec().param_shapes().items() if k.startswith("conv")}
        return convs | self.rnn_spec().param_shapes()

    def num_params(self) -> int:
        return _count(self.param_shapes())

    def describe(self) -> str:
        return f"CRNN {_describe_convs(self.convs)} -> {self.rnn_spec().describe()}"


ModelSpec = MLPSpec | CNNSpec | RNNSpec | CRNNSpec | CharLMSpec


def _describe_convs(convs: tuple[ConvSpec, ...]) -> str:
    return " ".join(f"conv{c.kernel}({c.out_channels})" + (f"/pool{c.pool}" if c.pool > 1 else "") for c in convs)


def _rnn_shapes(
    cell: str, input_size: int, hidden: int, num_layers: int, directions: tuple[str, ...]
) -> dict[str, tuple[int, ...]]:
    """PyTorch's ``nn.RNN/LSTM/GRU`` parameter shapes under ``rnn.``."""
    g, h, d = GATES[cell], hidden, len(directions)
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in range(num_layers):
        fan_in = input_size if layer == 0 else d * h
        for sfx in directions:
            shapes[f"rnn.weight_ih_l{layer}{sfx}"] = (g * h, fan_in)
            shapes[f"rnn.weight_hh_l{layer}{sfx}"] = (g * h, h)
            shapes[f"rnn.bias_ih_l{layer}{sfx}"] = (g * h,)
            shapes[f"rnn.bias_hh_l{layer}{sfx}"] = (g * h,)
    return shapes


def _fc_shapes(dims: list[int]) -> dict[str, tuple[int, ...]]:
    """``fc1.weight`` ``(dims[1], dims[0])``, ``fc1.bias`` ``(dims[1],)``, ... for a chain of linear layers."""
    shapes: dict[str, tuple[int, ...]] = {}
    for i, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:]), start=1):
        shapes[f"fc{i}.weight"] = (fan_out, fan_in)
        shapes[f"fc{i}.bias"] = (fan_out,)
    return shapes


def _count(shapes: dict[str, tuple[int, ...]]) -> int:
    total = 0
    for shape in shapes.values():
        n = 1
        for d in shape:
            n *= d
        total += n
    return total

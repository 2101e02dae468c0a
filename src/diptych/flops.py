"""Analytic FLOP counts, for achieved FLOP/s and model-FLOPs utilization (MFU).

Convention (as in the MFU literature): a multiply-add is 2 FLOPs; only convolutions and matmuls
are counted (bias adds, ReLU and pooling are O(activations) and left out); one training step
costs 3x the forward pass (the backward computes gradients for both inputs and weights, 2x).

    >>> from diptych.tasks import get_task
    >>> forward_flops(get_task("mnist-mlp").model)   # 2 * (784*256 + 256*128 + 128*10)
    469504
"""

from __future__ import annotations

from dataclasses import dataclass

from diptych.specs import GATES, CharLMSpec, CNNSpec, CRNNSpec, MLPSpec, RNNSpec


@dataclass(frozen=True)
class Layer:
    """One conv or dense layer of a model, as the backends time it alone (:func:`layers`).

    ``in_shape``: one sample's input, channels first (``(C, H, W)``, ``(C, L)`` or ``(D,)``); ``weight``:
    the canonical (PyTorch) weight shape; ``input_grad``: whether training computes the gradient of its
    input (not for the first layer, whose input is data); ``flops``: one forward pass for one sample."""

    name: str
    in_shape: tuple[int, ...]
    weight: tuple[int, ...]
    stride: int = 1
    padding: int = 0
    input_grad: bool = True
    flops: int = 0
    heads: int = 0  # > 0: not a layer with weights but attention itself over (T, D), in this many heads
    causal: bool = False


def _transformer_layers(spec) -> list[Layer]:
    """A transformer's matmuls per block (query/key/value, attention, output projection, the MLP's two) and
    the readout: dense layers over ``(T, D)`` tokens, and attention, whose ``Q K^T`` and ``A V`` cost
    ``4 T^2 D`` (:func:`diptych.transformer_specs.block_flops`)."""
    d, m = spec.width, spec.mlp_ratio * spec.width
    t = spec.context if spec.kind == "gpt" else 1 + spec.num_patches()
    out = []
    if spec.kind == "vit":
        p, c = spec.patch, spec.in_channels
        conv_flops = 2 * c * p * p * d * spec.num_patches()
        out.append(Layer("patch", (c, *spec.input_shape()), (d, c, p, p), p, 0, False, conv_flops))
    for i in range(spec.layers):
        b = f"blocks.{i}."
        out += [
            Layer(b + "attn.qkv", (t, d), (3 * d, d), flops=2 * t * d * 3 * d, input_grad=bool(out) or i > 0),
            Layer(b + "attention", (t, d), (), flops=4 * t * t * d, heads=spec.heads, causal=spec.kind == "gpt"),
            Layer(b + "attn.proj", (t, d), (d, d), flops=2 * t * d * d),
            Layer(b + "mlp.fc", (t, d), (m, d), flops=2 * t * d * m),
            Layer(b + "mlp.proj", (t, m), (d, m), flops=2 * t * m * d),
        ]
    if spec.kind == "gpt":  # the tied readout: logits = x @ embed.weight^T, over every position
        return out + [Layer("readout", (t, d), (spec.vocab, d), flops=2 * t * d * spec.vocab)]
    return out + [Layer("head", (d,), (spec.num_classes, d), flops=2 * d * spec.num_classes)]


def _conv_layers(spec: CNNSpec) -> list[Layer]:
    """The convs of a CNN; each costs 2 * C_in * k^dims * C_out * (number of output positions)."""
    out, shape = [], (spec.in_channels, *spec.input_shape())
    for i, (c, size) in enumerate(zip(spec.convs, spec.conv_output_sizes()), start=1):
        positions = 1
        for n in size:
            positions *= n
        weight = (c.out_channels, shape[0]) + (c.kernel,) * spec.dims
        flops = 2 * shape[0] * c.kernel**spec.dims * c.out_channels * positions
        out.append(Layer(f"conv{i}", shape, weight, c.stride, c.padding, i > 1, flops))
        shape = (c.out_channels, *(n // c.pool for n in size))
    return out


def forward_flops(spec: MLPSpec | CNNSpec | RNNSpec | CRNNSpec | CharLMSpec) -> int:
    """FLOPs of one forward pass for one sample (a language model's sample is one window of
    ``seq_len`` characters; the embedding is a lookup, 0 FLOPs; a GPT's sample is one context window)."""
    if spec.kind in ("gpt", "vit"):
        return sum(layer.flops for layer in _transformer_layers(spec))
    if spec.kind in ("mlp", "cnn"):
        return sum(layer.flops for layer in layers(spec))
    if spec.kind == "charlm":  # per character: each layer's gates, then the H -> V readout
        g, h = GATES[spec.cell], spec.hidden
        per_char = sum(2 * g * h * ((spec.embed if k == 0 else h) + h) for k in range(spec.num_layers))
        return spec.seq_len * (per_char + 2 * h * spec.vocab)
    if spec.kind == "crnn":
        return sum(layer.flops for layer in _conv_layers(spec.conv_spec())) + forward_flops(spec.rnn_spec())
    # rnn: per step, layer and direction, x @ W_ih and h @ W_hh; then the H -> classes readout
    g, h, d = GATES[spec.cell], spec.hidden, len(spec.directions())
    total = 0
    for layer in range(spec.num_layers):
        fan_in = spec.input_size if layer == 0 else d * h
        total += d * spec.seq_len * 2 * g * h * (fan_in + h)
    return total + 2 * d * h * spec.num_classes


def layers(spec: MLPSpec | CNNSpec | RNNSpec | CRNNSpec | CharLMSpec) -> list[Layer]:
    """The convs and dense layers of an MLP or CNN, in order, with the shapes they see (``[]`` for
    recurrent models, whose matmuls are not separate layers). Their ``flops`` add up to
    :func:`forward_flops`: they are where every counted FLOP happens.

        >>> from diptych.tasks import get_task
        >>> [(l.name, l.in_shape, l.flops) for l in layers(get_task("mnist-cnn").model)][:2]
        [('conv1', (1, 28, 28), 451584), ('conv2', (32, 14, 14), 7225344)]
    """
    if spec.kind in ("gpt", "vit"):
        return _transformer_layers(spec)
    if spec.kind not in ("mlp", "cnn"):
        return []
    out = _conv_layers(spec) if spec.kind == "cnn" else []
    width = spec.flat_features() if spec.kind == "cnn" else spec.in_features
    dims = [width, *spec.hidden, spec.num_classes]
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:]), start=1):
        out.append(Layer(f"fc{i}", (a,), (b, a), input_grad=bool(out), flops=2 * a * b))
    return out


def train_flops(spec: MLPSpec | CNNSpec | RNNSpec | CRNNSpec | CharLMSpec) -> int:
    """FLOPs of one training step for one sample: forward + backward = 3x forward."""
    return 3 * forward_flops(spec)

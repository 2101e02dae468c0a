"""(private, imports torch) Translation rules for torch layers: the NNX layer each becomes (its constructor,
with the torch layer's hyperparameters), and how a call to it is written.

``build(m, s)`` writes the constructor; ``s(value, name)`` marks a hyperparameter, which the class writer
replaces by the enclosing class's own parameter where one holds that value. ``call(e, m, attr, a, k)``
writes the call: ``(expression, channels_last)``, or a list of them for a tuple. Layers without weights
(activations, pooling, flatten) are written inline through the function rules of :mod:`._ops`.
"""

from __future__ import annotations

import torch
from torch import nn

from diptych.port import _ops
from diptych.port._fx import Refusal
from diptych.port._ops import arg, elementwise

OPT, OPT_END = "\x05", "\x06"


def _kw(name, value, default, s, hint=None):
    """``, name=<slot>``, left out of the class when every instance has the default."""
    return f"{OPT}{_ops.literal(default)}{OPT_END}, {name}={s(value, hint or name, default)}{OPT}"


def _bias(m, s, name="use_bias"):
    return _kw(name, m.bias is not None if not isinstance(m.bias, bool) else m.bias, True, s, "bias")


def _needs(e, x, channel):
    """A layer input: channels-last for a channel layer on a map (rank >= 3), torch's layout otherwise."""
    return e.cl(x) if channel and e.rank(x) >= 3 else e.cf(x)


class Layer:
    """A layer with weights: ``self.<attr> = <build>``; called as ``self.<attr>(x)``."""

    channel = False  # works on channels-last maps (conv, batch norm, group norm)

    def build(self, m, s) -> str:
        raise NotImplementedError

    def call(self, e, m, attr, a, k):
        if len(a) != 1 or k:
            raise Refusal(
                f"no rule for {type(m).__name__} called with {len(a)} arguments at {e.where}; no file written"
            )
        x = _needs(e, a[0], self.channel)
        return f"{attr}({x})", self.channel and e.rank(a[0]) >= 3


class Linear(Layer):
    def build(self, m, s):
        sizes = f"{s(m.in_features, 'in_features')}, {s(m.out_features, 'out_features')}"
        return f"nnx.Linear({sizes}{_bias(m, s)}, rngs=rngs)"


class Conv(Layer):
    channel = True

    def build(self, m, s):
        if m.padding_mode != "zeros":
            raise Refusal(f"no rule for {type(m).__name__}(padding_mode={m.padding_mode!r}); no file written")
        pad = m.padding
        if isinstance(pad, str):
            pad = repr(pad.upper())
        elif len(set(pad)) == 1:
            pad = s(pad[0], "padding")
        else:
            pad = s(tuple(pad), "padding")
        stride, dil = _same(m.stride), _same(m.dilation)
        return (
            f"nnx.Conv({s(m.in_channels, 'in_channels')}, {s(m.out_channels, 'out_channels')}, "
            f"kernel_size={s(tuple(m.kernel_size), 'kernel_size')}{_kw('strides', stride, 1, s, 'stride')}, "
            f"padding={pad}{_kw('kernel_dilation', dil, 1, s, 'dilation')}"
            f"{_kw('feature_group_count', m.groups, 1, s, 'groups')}{_bias(m, s)}, rngs=rngs)"
        )


def _same(values: tuple):
    """One number for a tuple whose entries are all equal (``stride=2`` rather than ``(2, 2)``), else the tuple."""
    return values[0] if len(set(values)) == 1 else values


class ConvTranspose(Layer):
    channel = True

    def build(self, m, s):
        if m.groups != 1 or m.padding_mode != "zeros":
            raise Refusal(f"no rule for {type(m).__name__} with groups > 1 or padding_mode; no file written")
        # torch pads the dilated input by d*(k-1) - p on each side (and output_padding at the end): lax's
        # explicit padding of conv_transpose, with the kernel flipped (diptych.port.convert flips it)
        pads = tuple(
            (d * (k - 1) - p, d * (k - 1) - p + op)
            for k, p, d, op in zip(m.kernel_size, m.padding, m.dilation, m.output_padding)
        )
        stride, dil = _same(m.stride), _same(m.dilation)
        return (
            f"nnx.ConvTranspose({s(m.in_channels, 'in_channels')}, {s(m.out_channels, 'out_channels')}, "
            f"kernel_size={s(tuple(m.kernel_size), 'kernel_size')}{_kw('strides', stride, 1, s, 'stride')}, "
            f"padding={pads}{_kw('kernel_dilation', dil, 1, s, 'dilation')}{_bias(m, s)}, rngs=rngs)"
        )


class BatchNorm(Layer):
    channel = True

    def build(self, m, s):
        if m.momentum is None or not m.track_running_stats:
            raise Refusal(
                f"no rule for {type(m).__name__} with momentum=None or track_running_stats=False; no file written"
            )
        affine = "" if m.affine else ", use_scale=False, use_bias=False"
        return (
            f"nnx_layers.BatchNorm({s(m.num_features, 'num_features')}, momentum={s(m.momentum, 'momentum')}, "
            f"epsilon={s(m.eps, 'eps')}{affine}, rngs=rngs)"
        )


class LayerNorm(Layer):
    def build(self, m, s):
        if len(m.normalized_shape) != 1:
            raise Refusal(f"no rule for LayerNorm over {len(m.normalized_shape)} dimensions; no file written")
        flags = ""
        if m.weight is None:
            flags += ", use_scale=False"
        if m.bias is None:
            flags += ", use_bias=False"
        dim = s(m.normalized_shape[0], "normalized_shape")
        return f"nnx.LayerNorm({dim}, epsilon={s(m.eps, 'eps')}{flags}, rngs=rngs)"


class GroupNorm(Layer):
    channel = True

    def build(self, m, s):
        flags = "" if m.affine else ", use_scale=False, use_bias=False"
        return (
            f"nnx.GroupNorm({s(m.num_channels, 'num_channels')}, num_groups={s(m.num_groups, 'num_groups')}, "
            f"epsilon={s(m.eps, 'eps')}{flags}, rngs=rngs)"
        )


class RMSNorm(Layer):
    def build(self, m, s):
        if len(m.normalized_shape) != 1:
            raise Refusal(f"no rule for RMSNorm over {len(m.normalized_shape)} dimensions; no file written")
        eps = m.eps if m.eps is not None else torch.finfo(torch.float32).eps  # torch: the dtype's epsilon
        flags = "" if m.weight is not None else ", use_scale=False"
        return f"nnx.RMSNorm({s(m.normalized_shape[0], 'normalized_shape')}, epsilon={s(eps, 'eps')}{flags}, rngs=rngs)"


class Embedding(Layer):
    def build(self, m, s):
        if m.max_norm is not None or m.scale_grad_by_freq or m.sparse:
            raise Refusal("no rule for Embedding with max_norm, scale_grad_by_freq or sparse; no file written")
        return f"nnx.Embed({s(m.num_embeddings, 'num_embeddings')}, {s(m.embedding_dim, 'embedding_dim')}, rngs=rngs)"

    def call(self, e, m, attr, a, k):
        ids = e.cf(a[0])
        if m.padding_idx is None:
            return f"{attr}({ids})", False
        # torch leaves the padding row out of the gradient: the looked-up rows of that id get none
        emb = f"{attr}({ids})"
        return f"jnp.where(({ids} == {m.padding_idx})[..., None], jax.lax.stop_gradient({emb}), {emb})", False


class Dropout(Layer):
    def build(self, m, s):
        return f"nnx.Dropout({s(m.p, 'p')}, rngs=rngs)"

    def call(self, e, m, attr, a, k):
        keep, (x,) = elementwise(e, a[:1])
        return f"{attr}({x})", keep


class MultiheadAttention(Layer):
    def build(self, m, s):
        if m.bias_k is not None or m.add_zero_attn or not m._qkv_same_embed_dim:
            raise Refusal(
                "no rule for MultiheadAttention with add_bias_kv, add_zero_attn or kdim/vdim; no file written"
            )
        bias = "" if m.in_proj_bias is not None else ", use_bias=False"
        drop = "" if not m.dropout else f", dropout_rate={s(m.dropout, 'dropout')}"
        return (
            f"nnx.MultiHeadAttention({s(m.num_heads, 'num_heads')}, {s(m.embed_dim, 'embed_dim')}{drop}{bias}, "
            f"decode=False, rngs=rngs)"
        )

    def call(self, e, m, attr, a, k):
        q = a[0]
        key, value = arg(a, k, 1, "key", q), arg(a, k, 2, "value", q)
        kpm, attn_mask = arg(a, k, 3, "key_padding_mask"), arg(a, k, 5, "attn_mask")
        xs = []
        for t in (q, key, value):
            x = e.cf(t)
            xs.append(x if m.batch_first else f"jnp.swapaxes({x}, 0, 1)")  # (T, B, E) -> (B, T, E)
        args = xs[:1] if key is q and value is q else xs[:2] if value is key else xs
        masks = []
        for mask, what in ((attn_mask, "attn_mask"), (kpm, "key_padding_mask")):
            if mask is None:
                continue
            if e.dtype_of(mask.v) != "bool":
                raise Refusal(
                    f"no rule for a float {what} of MultiheadAttention at {e.where} (pass a boolean mask); "
                    f"no file written"
                )
            if what == "attn_mask" and e.rank(mask) != 2:
                raise Refusal(f"no rule for a {e.rank(mask)}-d attn_mask at {e.where}; no file written")
            # torch's boolean masks are True where attention is blocked; NNX's are True where it is allowed
            m_ = e.cf(mask)
            masks.append(f"~{e.wrap(m_)}[None, None]" if what == "attn_mask" else f"~{e.wrap(m_)}[:, None, None, :]")
        call_kw = ""
        if masks:
            call_kw = f", mask={masks[0]}" if len(masks) == 1 else f", mask=nnx.combine_masks({', '.join(masks)})"
        out = f"{attr}({', '.join(args)}{call_kw})"
        if not m.batch_first:
            out = f"jnp.swapaxes({out}, 0, 1)"
        return [(out, False), ("None", False)]


class Recurrent(Layer):
    cls = ""

    def build(self, m, s):
        if getattr(m, "proj_size", 0):
            raise Refusal("no rule for LSTM(proj_size > 0); no file written")
        if m.dropout and m.num_layers > 1:
            raise Refusal(f"no rule for {type(m).__name__}(dropout={m.dropout}) between layers; no file written")
        opts = _kw("num_layers", m.num_layers, 1, s) + _kw("bias", m.bias, True, s)
        opts += _kw("batch_first", m.batch_first, False, s) + _kw("bidirectional", m.bidirectional, False, s)
        if isinstance(m, nn.RNN) and m.nonlinearity != "tanh":
            opts += f", nonlinearity={m.nonlinearity!r}"
        sizes = f"{s(m.input_size, 'input_size')}, {s(m.hidden_size, 'hidden_size')}"
        return f"nnx_layers.{self.cls}({sizes}{opts}, rngs=rngs)"

    def call(self, e, m, attr, a, k):
        x, state = a[0], arg(a, k, 1, "hx")
        if e.rank(x) != 3:
            raise Refusal(f"no rule for an unbatched {type(m).__name__} input at {e.where}; no file written")
        st = "" if state is None else f", {e.lit(state)}"
        return f"{attr}({e.cf(x)}{st})", False


class LSTM(Recurrent):
    cls = "LSTM"


class GRU(Recurrent):
    cls = "GRU"


class RNN(Recurrent):
    cls = "RNN"


LAYERS: list[tuple[type, Layer]] = [  # checked in order: subclasses first
    (nn.MultiheadAttention, MultiheadAttention()),
    (nn.LSTM, LSTM()),
    (nn.GRU, GRU()),
    (nn.RNN, RNN()),
    (nn.Linear, Linear()),
    ((nn.Conv1d, nn.Conv2d, nn.Conv3d), Conv()),
    ((nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d), ConvTranspose()),
    ((nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d), BatchNorm()),
    (nn.LayerNorm, LayerNorm()),
    (nn.GroupNorm, GroupNorm()),
    (nn.RMSNorm, RMSNorm()),
    (nn.Embedding, Embedding()),
    (nn.Dropout, Dropout()),
]


def _fn_args(m) -> tuple[str, dict] | None:
    """A weightless layer as a function rule of :mod:`._ops` and its arguments."""
    t = type(m)
    simple = {nn.ReLU: "relu", nn.SiLU: "silu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.Identity: "identity"}
    if t in simple:
        return simple[t], {}
    table = {
        nn.GELU: ("gelu", {"approximate": getattr(m, "approximate", "none")}),
        nn.LeakyReLU: ("leaky_relu", {"negative_slope": getattr(m, "negative_slope", 0.01)}),
        nn.ELU: ("elu", {"alpha": getattr(m, "alpha", 1.0)}),
        nn.Softmax: ("softmax", {"dim": getattr(m, "dim", None)}),
        nn.LogSoftmax: ("log_softmax", {"dim": getattr(m, "dim", None)}),
        nn.Flatten: ("flatten", {"start_dim": getattr(m, "start_dim", 1), "end_dim": getattr(m, "end_dim", -1)}),
        nn.Unflatten: ("unflatten", {"dim": getattr(m, "dim", 1), "sizes": getattr(m, "unflattened_size", ())}),
    }
    if t in table:
        return table[t]
    for n in (1, 2):
        if t.__name__ == f"MaxPool{n}d":
            kw = {k: getattr(m, k) for k in ("kernel_size", "stride", "padding", "dilation", "ceil_mode")}
            return f"max_pool{n}d", {**kw, "return_indices": m.return_indices}
        if t.__name__ == f"AvgPool{n}d":
            kw = {k: getattr(m, k) for k in ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")}
            return f"avg_pool{n}d", {**kw, "divisor_override": getattr(m, "divisor_override", None)}
        if t.__name__ == f"Adaptive{'Avg'}Pool{n}d":
            return f"adaptive_avg_pool{n}d", {"output_size": m.output_size}
        if t.__name__ == f"AdaptiveMaxPool{n}d":
            return f"adaptive_max_pool{n}d", {"output_size": m.output_size, "return_indices": m.return_indices}
    return None


def layer_rule(m) -> Layer | None:
    for cls, r in LAYERS:
        if isinstance(m, cls):
            return r
    return None


def function_rule(m):
    """``(op name, kwargs)`` for a weightless layer with a rule, else None."""
    if type(m).__module__.startswith("torch.nn") and layer_rule(m) is None:
        return _fn_args(m)
    return None


def call_function_layer(e, m, a, k):
    """A weightless layer called: its function rule, written inline."""
    found = function_rule(m)
    if found is None:
        raise Refusal(f"no rule for nn.{type(m).__name__} at {e.where}; no file written")
    name, kw = found
    e.op = name
    return _ops.RULES[name](e, list(a), {**kw, **k})

"""The Flax NNX side of a port: a model's layers as :class:`~diptych.port.units.Unit` s, variables in and out."""

from __future__ import annotations

import numpy as np
from flax import nnx

from diptych.port import nnx_layers
from diptych.port.units import Unit, natural_key

_CELLS = [  # (class, kind, layout), most specific first
    (nnx_layers.LSTMCell, "lstm", "torch"),
    (nnx_layers.GRUCell, "gru", "torch"),
    (nnx_layers.RNNCell, "rnn", "torch"),
    (nnx.LSTMCell, "lstm", "flax_lstm"),
    (nnx.OptimizedLSTMCell, "lstm", "flax_fused"),
    (nnx.GRUCell, "gru", "flax_fused"),
    (nnx.SimpleCell, "rnn", "flax_fused"),
]
_LEAF = [
    (nnx.Linear, "linear"),
    (nnx.Conv, "conv"),
    (nnx.ConvTranspose, "conv_transpose"),
    (nnx.BatchNorm, "batchnorm"),
    (nnx.LayerNorm, "layernorm"),
    (nnx.GroupNorm, "groupnorm"),
    (nnx.RMSNorm, "rmsnorm"),
    (nnx.Embed, "embed"),
    (nnx.MultiHeadAttention, "mha"),
]
_CONFIG = {
    "conv": ("strides", "padding", "kernel_dilation", "feature_group_count", "input_dilation"),
    "conv_transpose": ("strides", "padding", "kernel_dilation", "transpose_kernel"),
    "batchnorm": ("momentum", "epsilon", "use_running_average", "use_fast_variance"),
    "layernorm": ("epsilon",),
    "groupnorm": ("epsilon", "num_groups"),
    "rmsnorm": ("epsilon",),
    "mha": ("num_heads", "deterministic", "dropout_rate"),
}


def path_str(path: tuple) -> str:
    return ".".join(str(p) for p in path)


def kind_of(m) -> tuple[str, str] | None:
    for cls, kind, layout in _CELLS:
        if isinstance(m, cls):
            return kind, layout
    for cls, kind in _LEAF:
        if isinstance(m, cls):
            return kind, kind
    return None


def all_variables(model) -> dict[tuple, nnx.Variable]:
    return {p: v for p, v in nnx.iter_graph(model) if isinstance(v, (nnx.Param, nnx.BatchStat))}


def units(model) -> list[Unit]:
    """Weight-bearing layers, in NNX's (sorted) attribute order."""
    variables = all_variables(model)
    modules = dict(nnx.iter_modules(model))
    composite = [p for p, m in modules.items() if kind_of(m) and kind_of(m)[0] in ("lstm", "gru", "rnn", "mha")]
    covered = set()
    out = []
    for path in sorted(modules, key=lambda p: natural_key(path_str(p))):
        m = modules[path]
        if any(path[: len(c)] == c and path != c for c in composite):
            continue
        found = kind_of(m)
        own = {vp: v for vp, v in variables.items() if vp[: len(path)] == path and len(vp) > len(path)}
        if found is None:
            for vp, v in own.items():  # a module's own Param attributes (a class token, a positional table)
                if len(vp) == len(path) + 1 and vp not in covered:
                    covered.add(vp)
                    out.append(
                        Unit(
                            path_str(vp),
                            path_str(path),
                            "param",
                            type(v).__name__,
                            {"value": vp},
                            {"value": tuple(v.get_value().shape)},
                        )
                    )
            continue
        kind, layout = found
        keys = {".".join(str(x) for x in vp[len(path) :]): vp for vp in own}
        covered.update(own)
        cfg = {k: getattr(m, k) for k in _CONFIG.get(kind, ()) if hasattr(m, k)}
        cfg["nnx"] = layout
        if kind == "conv":
            cfg["ndim"] = len(m.kernel_size)
        out.append(
            Unit(
                path_str(path),
                path_str(path),
                kind,
                type(m).__name__,
                keys,
                {k: tuple(variables[vp].get_value().shape) for k, vp in keys.items()},
                cfg,
            )
        )
    return out


def get(model, unit: Unit, variables: dict | None = None) -> dict[str, np.ndarray]:
    variables = variables if variables is not None else all_variables(model)
    return {k: np.array(variables[vp].get_value(), dtype=np.float32, copy=True) for k, vp in unit.keys.items()}


def put(model, unit: Unit, tensors: dict[str, np.ndarray], variables: dict | None = None) -> None:
    import jax.numpy as jnp

    variables = variables if variables is not None else all_variables(model)
    for k, v in tensors.items():
        if k in unit.keys:
            var = variables[unit.keys[k]]
            var.set_value(jnp.asarray(v, dtype=var.get_value().dtype))


def build_abstract(make):
    """``make()`` -> an NNX model whose variables are zeros (random keys: key 0), built without running
    its initializers: ``nnx.eval_shape`` traces them. Eagerly, each initializer compiles for each
    parameter shape (a minute for a small U-Net on a busy 2-core CPU); converted weights replace the
    zeros anyway."""
    import jax
    import jax.numpy as jnp

    model = nnx.eval_shape(make)
    for _, v in nnx.iter_graph(model):
        if isinstance(v, nnx.Variable):
            val = v.get_value()
            if isinstance(val, jax.ShapeDtypeStruct):
                if jnp.issubdtype(val.dtype, jax.dtypes.prng_key):
                    new = jax.random.split(jax.random.key(0), val.shape) if val.shape else jax.random.key(0)
                else:
                    new = jnp.zeros(val.shape, val.dtype)
                v.set_value(new)
    return model

"""Canonical (PyTorch-layout) weights <-> Flax NNX parameters.

Layout rules, canonical -> JAX:

* conv kernel ``(O, I, kH, kW)`` -> ``(kH, kW, I, O)``: ``transpose(2, 3, 1, 0)``
  (1-D: ``(O, I, k)`` -> ``(k, I, O)``: ``transpose(2, 1, 0)``); back is ``(3, 2, 0, 1)`` / ``(2, 1, 0)``.
* linear weight ``(out, in)`` -> kernel ``(in, out)``: ``.T``.
* the first linear layer after a conv stack also reorders its input features, because torch
  flattens ``(C, H, W)`` and the channels-last JAX twin flattens ``(H, W, C)``.
* recurrent layer ``rnn_l{k}[_reverse]`` ``{w_ih, w_hh, b_ih, b_hh}`` <-> PyTorch's
  ``rnn.weight_ih_l{k}[_reverse]`` etc.: kernels ``.T``, biases as they are. The gate blocks keep
  PyTorch's order (i, f, g, o for LSTM; r, z, n for GRU), so no gate is permuted.
* embedding ``embed.embedding`` ``(V, E)`` <-> ``embed.weight``: the same layout.
* transformers (:mod:`diptych.transformer_specs`) by attribute path: ``blocks.0.attn.qkv.kernel``
  ``(D, 3D)`` <-> ``blocks.0.attn.qkv.weight`` ``(3D, D)``; LayerNorm ``scale`` <-> ``weight``;
  ``Embed.embedding`` <-> ``weight``; the ViT's patch conv as any conv; bare parameters (``cls_token``,
  ``pos_embed``) as they are.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from diptych.fsio import atomic_write
from diptych.specs import CNNSpec, MLPSpec, RNNSpec
from diptych.weights import check_weights


def _conv_to_jax(w: np.ndarray) -> np.ndarray:
    return w.transpose(*range(2, w.ndim), 1, 0)  # (O, I, *k) -> (*k, I, O)


def _conv_to_canonical(k: np.ndarray) -> np.ndarray:
    n = k.ndim - 2
    return k.transpose(n + 1, n, *range(n))  # (*k, I, O) -> (O, I, *k)


def _fc1_to_jax(w: np.ndarray, feature_shape: tuple[int, ...]) -> np.ndarray:
    out = w.shape[0]
    c, *spatial = feature_shape
    w = w.reshape(out, c, *spatial)  # (out, C, H, W)
    w = w.transpose(*range(2, 2 + len(spatial)), 1, 0)  # (H, W, C, out)
    return w.reshape(-1, out)  # (H*W*C, out)


def _fc1_to_canonical(k: np.ndarray, feature_shape: tuple[int, ...]) -> np.ndarray:
    c, *spatial = feature_shape
    out = k.shape[1]
    k = k.reshape(*spatial, c, out)  # (H, W, C, out)
    k = k.transpose(len(spatial) + 1, len(spatial), *range(len(spatial)))  # (out, C, H, W)
    return k.reshape(out, -1)


_RNN_NAMES = {"w_ih": "weight_ih", "w_hh": "weight_hh", "b_ih": "bias_ih", "b_hh": "bias_hh"}


def _rnn_name(layer: str, key: str) -> str:
    """``("rnn_l0_reverse", "w_ih")`` -> ``"rnn.weight_ih_l0_reverse"``."""
    return f"rnn.{_RNN_NAMES[key]}_{layer[len('rnn_') :]}"


TRANSFORMERS = ("gpt", "vit")
_LEAF = {"kernel": "weight", "scale": "weight", "embedding": "weight", "bias": "bias"}


def _flat(tree: dict, prefix: tuple = ()):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _flat(value, prefix + (key,))
        else:
            yield prefix + (key,), value


def _transformer_to_canonical(tree: dict) -> dict[str, np.ndarray]:
    out = {}
    for path, v in _flat(tree):
        v = np.asarray(v, dtype=np.float32)
        if path[-1] in _LEAF:  # a layer's parameter: rename, and transpose kernels
            if path[-1] == "kernel":
                v = _conv_to_canonical(v) if v.ndim > 2 else v.T
            path = path[:-1] + (_LEAF[path[-1]],)
        out[".".join(map(str, path))] = np.ascontiguousarray(v)
    return out


def _transformer_from_canonical(params: dict[str, np.ndarray]) -> dict:
    """``blocks.0.attn.qkv.weight`` -> ``{"blocks": {0: {"attn": {"qkv": {"kernel": W.T}}}}}``."""
    tree: dict = {}
    for name, v in params.items():
        parts = [int(p) if p.isdigit() else p for p in name.split(".")]
        node = tree
        for p in parts[:-2]:
            node = node.setdefault(p, {})
        if len(parts) == 1:  # a bare parameter
            tree[parts[0]] = np.asarray(v)
            continue
        layer, leaf = parts[-2], parts[-1]
        if leaf == "weight":
            if str(layer).startswith("ln"):
                leaf = "scale"
            elif str(layer).endswith("embed"):
                leaf = "embedding"
            else:
                leaf, v = "kernel", _conv_to_jax(v) if v.ndim > 2 else v.T
        node.setdefault(layer, {})[leaf] = np.ascontiguousarray(v)
    return tree


def to_canonical(spec: MLPSpec | CNNSpec | RNNSpec, tree: dict) -> dict[str, np.ndarray]:
    """Any parameter-shaped pure dict (weights, gradients, Adam moments) -> canonical layout."""
    if spec.kind in TRANSFORMERS:
        return _transformer_to_canonical(tree)
    out = {}
    for layer, p in tree.items():
        if layer.startswith("rnn_"):
            for key, v in p.items():
                v = np.asarray(v, dtype=np.float32)
                out[_rnn_name(layer, key)] = np.ascontiguousarray(v.T if key.startswith("w_") else v)
            continue
        if layer == "embed":
            out["embed.weight"] = np.asarray(p["embedding"], dtype=np.float32)
            continue
        k = np.asarray(p["kernel"], dtype=np.float32)
        if layer.startswith("conv"):
            w = _conv_to_canonical(k)
        elif layer == "fc1" and isinstance(spec, CNNSpec):
            w = _fc1_to_canonical(k, spec.feature_shape())
        else:
            w = k.T
        out[f"{layer}.weight"] = np.ascontiguousarray(w)
        out[f"{layer}.bias"] = np.asarray(p["bias"], dtype=np.float32)
    return out


def from_canonical(spec: MLPSpec | CNNSpec | RNNSpec, params: dict[str, np.ndarray]) -> dict:
    """Canonical weights -> the NNX pure-dict layout ``{"conv1": {"kernel", "bias"}, ...}``."""
    if spec.kind in TRANSFORMERS:
        return _transformer_from_canonical(params)
    tree: dict = {}
    for name in params:
        if name.startswith("rnn."):  # rnn.weight_ih_l0_reverse -> rnn_l0_reverse / w_ih
            kind, _, rest = name[len("rnn.") :].partition("_l")
            key = {v: k for k, v in _RNN_NAMES.items()}[kind]
            v = params[name]
            tree.setdefault(f"rnn_l{rest}", {})[key] = np.ascontiguousarray(v.T if key.startswith("w_") else v)
            continue
        layer, kind = name.rsplit(".", 1)
        if kind != "weight":
            continue
        if layer == "embed":
            tree["embed"] = {"embedding": np.asarray(params[name])}
            continue
        w = params[name]
        if layer.startswith("conv"):
            k = _conv_to_jax(w)
        elif layer == "fc1" and isinstance(spec, CNNSpec):
            k = _fc1_to_jax(w, spec.feature_shape())
        else:
            k = w.T
        tree[layer] = {"kernel": np.ascontiguousarray(k), "bias": np.asarray(params[f"{layer}.bias"])}
    return tree


def export(model: nnx.Module) -> dict[str, np.ndarray]:
    """``{canonical name: float32 array}`` in PyTorch layout."""
    return to_canonical(model.spec, nnx.to_pure_dict(nnx.state(model, nnx.Param)))


def load(model: nnx.Module, params: dict[str, np.ndarray], source: str = "weights") -> None:
    """Copy canonical weights into ``model`` in place, refusing weights of another model."""
    check_weights(params, model.spec.param_shapes(), source)
    state = nnx.state(model, nnx.Param)
    nnx.replace_by_pure_dict(state, from_canonical(model.spec, params))
    nnx.update(model, state)


def _is_chain(state) -> bool:
    return isinstance(state, tuple) and not hasattr(state, "_fields")  # optax.chain: a plain tuple


def _leaf_states(state):
    """The transformations' own states (NamedTuples), flattening nested ``optax.chain`` tuples."""
    if _is_chain(state):
        for s in state:
            yield from _leaf_states(s)
    else:
        yield state


def _map_states(fn, state):
    return tuple(_map_states(fn, s) for s in state) if _is_chain(state) else fn(state)


def opt_state_to_canonical(spec, opt_state) -> dict[str, np.ndarray]:
    """An optax state (on this process) in the canonical form the torch twin uses: ``step``, and per
    parameter ``exp_avg.<name>`` / ``exp_avg_sq.<name>`` (Adam) or ``momentum_buffer.<name>``, in PyTorch layout."""
    out: dict[str, np.ndarray] = {}
    for s in _leaf_states(opt_state):
        if isinstance(s, optax.ScaleByAdamState):
            out["step"] = np.asarray(s.count, np.int64)
            for key, tree in (("exp_avg", s.mu), ("exp_avg_sq", s.nu)):
                out.update({f"{key}.{k}": v for k, v in to_canonical(spec, nnx.to_pure_dict(tree)).items()})
        elif isinstance(s, optax.TraceState):
            trace = to_canonical(spec, nnx.to_pure_dict(s.trace))
            out.update({f"momentum_buffer.{k}": v for k, v in trace.items()})
        elif isinstance(s, optax.ScaleByScheduleState):
            out["step"] = np.asarray(s.count, np.int64)
    out.setdefault("step", np.asarray(0, np.int64))
    return out


def opt_state_from_canonical(spec, opt_state, params, flat: dict[str, np.ndarray]):
    """``opt_state`` (its structure) with the values of canonical ``flat``; ``params``: the parameters'
    tree (on this process), which each moment takes the structure of."""

    def tree(key):
        state = jax.tree.map(jnp.zeros_like, params)  # same structure as the parameters
        part = {k[len(key) + 1 :]: v for k, v in flat.items() if k.startswith(key + ".")}
        nnx.replace_by_pure_dict(state, from_canonical(spec, part))
        return state

    count = jnp.asarray(np.asarray(flat["step"]).reshape(-1)[0], jnp.int32)

    def restore(s):
        if isinstance(s, optax.ScaleByAdamState):
            return s._replace(count=count, mu=tree("exp_avg"), nu=tree("exp_avg_sq"))
        if isinstance(s, optax.TraceState):
            return s._replace(trace=tree("momentum_buffer"))
        if isinstance(s, optax.ScaleByScheduleState):
            return s._replace(count=count)
        return s

    return _map_states(restore, opt_state)


def save_native(params: dict[str, np.ndarray], path, spec: MLPSpec | CNNSpec | RNNSpec) -> None:
    """Write Flax NNX parameters as msgpack (``flax.serialization``), as a Flax user loads them::

    state = nnx.state(model, nnx.Param)
    nnx.replace_by_pure_dict(state, flax.serialization.msgpack_restore(open(path, "rb").read()))
    nnx.update(model, state)
    """
    from flax import serialization

    atomic_write(path, serialization.msgpack_serialize(from_canonical(spec, params)))


def read_native(path, spec: MLPSpec | CNNSpec | RNNSpec) -> dict[str, np.ndarray]:
    """Read a msgpack NNX parameter file written for ``spec`` and return canonical weights."""
    from flax import serialization

    from diptych.errors import DiptychError

    try:
        tree = serialization.msgpack_restore(open(path, "rb").read())
        return to_canonical(spec, tree)
    except Exception as e:  # msgpack errors, wrong structure: all one line
        raise DiptychError(f"{path} is not a Flax msgpack parameter file for this model ({type(e).__name__})") from None

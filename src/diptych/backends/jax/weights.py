"""Canonical (PyTorch-layout) weights <-> Flax NNX parameters.

Layout rules, canonical -> JAX:

* conv kernel ``(O, I, kH, kW)`` -> ``(kH, kW, I, O)``: ``transpose(2, 3, 1, 0)``
  (1-D: ``(O, I, k)`` -> ``(k, I, O)``: ``transpose(2, 1, 0)``); back is ``(3, 2, 0, 1)`` / ``(2, 1, 0)``.
* linear weight ``(out, in)`` -> kernel ``(in, out)``: ``.T``.
* the first linear layer after a conv stack also reorders its input features, because torch
  flattens ``(C, H, W)`` and the channels-last JAX twin flattens ``(H, W, C)``.
"""

from __future__ import annotations

import numpy as np
from flax import nnx

from diptych.tasks import CNNSpec, MLPSpec
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


def to_canonical(spec: MLPSpec | CNNSpec, tree: dict) -> dict[str, np.ndarray]:
    """Any parameter-shaped pure dict (weights, gradients, Adam moments) -> canonical layout."""
    out = {}
    for layer, p in tree.items():
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


def from_canonical(spec: MLPSpec | CNNSpec, params: dict[str, np.ndarray]) -> dict:
    """Canonical weights -> the NNX pure-dict layout ``{"conv1": {"kernel", "bias"}, ...}``."""
    tree = {}
    for name in params:
        layer, kind = name.rsplit(".", 1)
        if kind != "weight":
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


def save_native(params: dict[str, np.ndarray], path, spec: MLPSpec | CNNSpec) -> None:
    """Write Flax NNX parameters as msgpack (``flax.serialization``), as a Flax user loads them::

        state = nnx.state(model, nnx.Param)
        nnx.replace_by_pure_dict(state, flax.serialization.msgpack_restore(open(path, "rb").read()))
        nnx.update(model, state)
    """
    import os
    import tempfile
    from pathlib import Path

    from flax import serialization

    path = Path(path)
    data = serialization.msgpack_serialize(from_canonical(spec, params))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_native(path, spec: MLPSpec | CNNSpec) -> dict[str, np.ndarray]:
    """Read a msgpack NNX parameter file written for ``spec`` and return canonical weights."""
    from flax import serialization

    from diptych.errors import DiptychError

    try:
        tree = serialization.msgpack_restore(open(path, "rb").read())
        return to_canonical(spec, tree)
    except Exception as e:  # msgpack errors, wrong structure: all one line
        raise DiptychError(f"{path} is not a Flax msgpack parameter file for this model "
                           f"({type(e).__name__})") from None

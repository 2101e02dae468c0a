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

from diptych.tasks import CNNSpec
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


def export(model: nnx.Module) -> dict[str, np.ndarray]:
    """``{canonical name: float32 array}`` in PyTorch layout."""
    spec = model.spec
    pure = nnx.to_pure_dict(nnx.state(model, nnx.Param))  # {"conv1": {"kernel": ..., "bias": ...}, ...}
    out = {}
    for layer, p in pure.items():
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


def load(model: nnx.Module, params: dict[str, np.ndarray], source: str = "weights") -> None:
    """Copy canonical weights into ``model`` in place, refusing weights of another model."""
    spec = model.spec
    check_weights(params, spec.param_shapes(), source)
    state = nnx.state(model, nnx.Param)
    pure = nnx.to_pure_dict(state)
    for layer in pure:
        w = params[f"{layer}.weight"]
        if layer.startswith("conv"):
            k = _conv_to_jax(w)
        elif layer == "fc1" and isinstance(spec, CNNSpec):
            k = _fc1_to_jax(w, spec.feature_shape())
        else:
            k = w.T
        pure[layer] = {"kernel": np.ascontiguousarray(k), "bias": np.asarray(params[f"{layer}.bias"])}
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(model, state)

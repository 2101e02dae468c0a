"""The torch side of a port: a model's layers as :class:`~diptych.port.units.Unit` s, tensors in and out."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from diptych.port.units import Unit

_KIND = [  # (class, kind); checked in order, so subclasses of Linear in attention are caught first
    (nn.MultiheadAttention, "mha"),
    (nn.LSTM, "lstm"),
    (nn.GRU, "gru"),
    (nn.RNN, "rnn"),
    (nn.Linear, "linear"),
    ((nn.Conv1d, nn.Conv2d, nn.Conv3d), "conv"),
    ((nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d), "conv_transpose"),
    (nn.modules.batchnorm._BatchNorm, "batchnorm"),
    (nn.LayerNorm, "layernorm"),
    (nn.GroupNorm, "groupnorm"),
    (nn.RMSNorm, "rmsnorm"),
    (nn.Embedding, "embed"),
]


def kind_of(m: nn.Module) -> str | None:
    for cls, kind in _KIND:
        if isinstance(m, cls):
            return kind
    return None


def _config(m: nn.Module, kind: str) -> dict:
    names = {
        "conv": ("stride", "padding", "dilation", "groups", "padding_mode"),
        "conv_transpose": ("stride", "padding", "output_padding", "dilation", "groups"),
        "batchnorm": ("momentum", "eps", "training", "track_running_stats"),
        "layernorm": ("eps", "normalized_shape"),
        "groupnorm": ("eps", "num_groups"),
        "rmsnorm": ("eps",),
        "mha": ("num_heads", "batch_first", "dropout"),
        "linear": ("in_features", "out_features"),
    }
    cfg = {k: getattr(m, k) for k in names.get(kind, ())}
    if kind == "conv":
        cfg["ndim"] = m.weight.ndim - 2
    if kind == "mha":
        cfg["packed"] = m.in_proj_weight is not None
    return cfg


def units(model: nn.Module) -> list[Unit]:
    """Weight-bearing layers in registration order (recurrent layers: one unit per layer and direction).
    A layer whose every tensor is an earlier layer's (an output head tied to the embedding) is marked
    ``tied``: it needs no NNX layer of its own."""
    out, taken = _units(model), set()
    seen: set[int] = set()
    sd = dict(model.named_parameters(remove_duplicate=False))
    for u in out:
        ids = {id(sd[k]) for k in u.keys.values() if k in sd}
        if ids and ids <= seen:
            u.config["tied"] = True
        seen |= ids
    del taken
    return out


def _units(model: nn.Module) -> list[Unit]:
    out, taken = [], set()
    for name, m in model.named_modules():
        if any(name == t or name.startswith(t + ".") for t in taken):
            continue
        p = f"{name}." if name else ""
        kind = kind_of(m)
        if kind in ("lstm", "gru", "rnn"):
            taken.add(name)
            kind = "rnn" if kind == "rnn" else kind
            if kind == "rnn" and m.nonlinearity != "tanh":
                kind = "rnn"  # relu RNNs convert alike; the cell must use relu too (hint on divergence)
            for layer in range(m.num_layers):
                for sfx in ("", "_reverse")[: 1 + m.bidirectional]:
                    keys = {
                        k: f"{p}{k}_l{layer}{sfx}"
                        for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                        if hasattr(m, f"{k}_l{layer}{sfx}")
                    }
                    sd = dict(m.named_parameters())
                    out.append(
                        Unit(
                            f"{p}l{layer}{sfx}",
                            name,
                            kind,
                            type(m).__name__,
                            keys,
                            {k: tuple(sd[v[len(p) :]].shape) for k, v in keys.items()},
                            {"hidden_size": m.hidden_size, "batch_first": m.batch_first, "torch_bias": m.bias},
                        )
                    )
            continue
        if kind == "mha":
            taken.add(name)
            keys = {k: f"{p}{k}" for k, v in m.named_parameters() if v is not None}
        elif kind is not None:
            keys = {
                k: f"{p}{k}"
                for k, v in [*m.named_parameters(recurse=False), *m.named_buffers(recurse=False)]
                if v is not None and k != "num_batches_tracked"
            }
        else:  # a custom module's own parameters (a class token, a positional table): copied as they are
            for k, v in m.named_parameters(recurse=False):
                out.append(Unit(f"{p}{k}", name, "param", "Parameter", {"value": f"{p}{k}"}, {"value": tuple(v.shape)}))
            continue
        if not keys:
            continue
        sd = model.state_dict()
        out.append(
            Unit(
                name,
                name,
                kind,
                type(m).__name__,
                keys,
                {k: tuple(sd[v].shape) for k, v in keys.items()},
                _config(m, kind),
            )
        )
    return out


def get(model: nn.Module, unit: Unit) -> dict[str, np.ndarray]:
    sd = model.state_dict()
    return {k: np.array(sd[v].detach().cpu().numpy(), dtype=np.float32, copy=True) for k, v in unit.keys.items()}


def put(model: nn.Module, unit: Unit, tensors: dict[str, np.ndarray]) -> None:
    sd = model.state_dict()
    with torch.no_grad():
        for k, v in tensors.items():
            if k in unit.keys:
                sd[unit.keys[k]].copy_(torch.from_numpy(np.ascontiguousarray(v)))


def state_dict_numpy(model: nn.Module) -> dict[str, np.ndarray]:
    return {k: np.array(v.detach().cpu().numpy(), copy=True) for k, v in model.state_dict().items()}

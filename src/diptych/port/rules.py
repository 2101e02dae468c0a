"""Layout rules, one per layer kind: PyTorch tensors <-> Flax NNX variables (numpy only).

A rule works on one layer ("unit"): ``to_nnx(kind, torch_tensors, cfg)`` returns the NNX variables
by their path inside the NNX layer (``"kernel"``, ``"ii.kernel"``, ...); ``to_torch(kind, nnx_vars, cfg)``
goes back. ``cfg`` says which NNX layout the layer has (``cfg["nnx"]``: the NNX class's layout name)
and carries what a rule needs (a Linear's flatten order, a transposed conv's ``transpose_kernel``).

Every rule is a permutation of entries, so ``to_torch(to_nnx(t)) == t`` bit for bit, except one: Flax's
own LSTM/GRU cells have *one* bias per gate where torch has two (``b_ih + b_hh``); there the biases
are summed on the way in (exact forward, not invertible) and a gradient maps back by the adjoint
(``grad_to_torch``: both torch biases get the NNX bias's gradient).
"""

from __future__ import annotations

import numpy as np

from diptych.errors import DiptychError

GATES = {"lstm": 4, "gru": 3, "rnn": 1}  # torch order: LSTM i, f, g, o; GRU r, z, n
FLAX_LSTM_GATES = ("i", "f", "g", "o")  # nnx.LSTMCell: ii/hi, if_/hf, ig/hg, io/ho
_FLAX_LSTM_IN = {"i": "ii", "f": "if_", "g": "ig", "o": "io"}


def _conv_to_nnx(w: np.ndarray) -> np.ndarray:
    return w.transpose(*range(2, w.ndim), 1, 0)  # (O, I/g, *k) -> (*k, I/g, O)


def _conv_to_torch(k: np.ndarray) -> np.ndarray:
    n = k.ndim - 2
    return k.transpose(n + 1, n, *range(n))  # (*k, I/g, O) -> (O, I/g, *k)


def _flatten_perm(w: np.ndarray, flatten: tuple[int, int] | None) -> np.ndarray:
    """(out, C*S) weight of a Linear after torch's (C, S) flatten -> the (S, C) order of a channels-last twin."""
    if not flatten:
        return w
    c, s = flatten
    return w.reshape(w.shape[0], c, s).transpose(0, 2, 1).reshape(w.shape[0], c * s)


def _flatten_unperm(w: np.ndarray, flatten: tuple[int, int] | None) -> np.ndarray:
    if not flatten:
        return w
    c, s = flatten
    return w.reshape(w.shape[0], s, c).transpose(0, 2, 1).reshape(w.shape[0], c * s)


def _split(v: np.ndarray, n: int) -> list[np.ndarray]:
    return np.split(v, n, axis=0)


def to_nnx(kind: str, t: dict[str, np.ndarray], cfg: dict) -> dict[str, np.ndarray]:
    """One layer's torch tensors (local names: ``weight``, ``bias``, ``running_mean``...) -> NNX variables."""
    nnx = cfg.get("nnx", kind)
    out: dict[str, np.ndarray] = {}
    if kind == "linear":
        out["kernel"] = _flatten_perm(t["weight"], cfg.get("flatten")).T  # (out, in) -> (in, out)
    elif kind == "conv":
        out["kernel"] = _conv_to_nnx(t["weight"])
    elif kind == "conv_transpose":
        w = t["weight"]  # (I, O, *k); torch applies it as the adjoint of a conv: flipped, I/O swapped
        spatial = tuple(range(2, w.ndim))
        if cfg.get("transpose_kernel"):
            out["kernel"] = w.transpose(*spatial, 1, 0)  # (*k, O, I): lax flips and swaps it itself
        else:
            out["kernel"] = np.flip(w, spatial).transpose(*spatial, 0, 1)  # (*k, I, O), pre-flipped
    elif kind == "batchnorm":
        out.update(scale=t.get("weight"), bias=t.get("bias"), mean=t.get("running_mean"), var=t.get("running_var"))
    elif kind in ("layernorm", "groupnorm", "rmsnorm"):
        out.update(scale=t.get("weight"), bias=t.get("bias"))
    elif kind == "embed":
        out["embedding"] = t["weight"]
    elif kind == "param":
        out["value"] = t["value"]
    elif kind in GATES:
        out.update(_recurrent_to_nnx(kind, nnx, t))
    elif kind == "mha":
        out.update(_mha_to_nnx(t, cfg))
    else:  # pragma: no cover - units are built from the kinds above
        raise DiptychError(f"no layout rule for layer kind {kind!r}")
    if "bias" in t and kind in ("linear", "conv", "conv_transpose"):
        out["bias"] = t["bias"]
    return {k: np.ascontiguousarray(v) for k, v in out.items() if v is not None}


def to_torch(kind: str, n: dict[str, np.ndarray], cfg: dict, grad: bool = False) -> dict[str, np.ndarray]:
    """NNX variables -> torch tensors; ``grad=True`` maps a gradient (the adjoint of :func:`to_nnx`)."""
    nnx = cfg.get("nnx", kind)
    out: dict[str, np.ndarray] = {}
    if kind == "linear":
        out["weight"] = _flatten_unperm(n["kernel"].T, cfg.get("flatten"))
    elif kind == "conv":
        out["weight"] = _conv_to_torch(n["kernel"])
    elif kind == "conv_transpose":
        k = n["kernel"]
        nd = k.ndim - 2
        if cfg.get("transpose_kernel"):
            out["weight"] = k.transpose(nd + 1, nd, *range(nd))
        else:
            out["weight"] = np.flip(k.transpose(nd, nd + 1, *range(nd)), tuple(range(2, k.ndim)))
    elif kind == "batchnorm":
        out.update(weight=n.get("scale"), bias=n.get("bias"), running_mean=n.get("mean"), running_var=n.get("var"))
    elif kind in ("layernorm", "groupnorm", "rmsnorm"):
        out.update(weight=n.get("scale"), bias=n.get("bias"))
    elif kind == "embed":
        out["weight"] = n["embedding"]
    elif kind == "param":
        out["value"] = n["value"]
    elif kind in GATES:
        out.update(_recurrent_to_torch(kind, nnx, n, cfg, grad))
    elif kind == "mha":
        out.update(_mha_to_torch(n, cfg))
    if "bias" in n and kind in ("linear", "conv", "conv_transpose"):
        out["bias"] = n["bias"]
    return {k: np.ascontiguousarray(v) for k, v in out.items() if v is not None}


# --- recurrent cells -------------------------------------------------------------------------------
# torch: weight_ih (G*H, I), weight_hh (G*H, H), bias_ih, bias_hh (G*H,), gate blocks in torch order.
# NNX layouts: "torch" (diptych.port.nnx_layers cells: w_ih (I, G*H), w_hh, b_ih, b_hh: exact),
# "flax_lstm" (nnx.LSTMCell: one Linear per gate), "flax_fused" (nnx.OptimizedLSTMCell, nnx.GRUCell,
# nnx.SimpleCell: dense_i / dense_h), both with one bias.


def _recurrent_to_nnx(kind: str, layout: str, t: dict) -> dict:
    wi, wh = t["weight_ih"], t["weight_hh"]
    bi, bh = t.get("bias_ih"), t.get("bias_hh")
    if layout == "torch":
        return {"w_ih": wi.T, "w_hh": wh.T, "b_ih": bi, "b_hh": bh}
    if layout == "flax_lstm":
        out = {}
        b = (bi if bi is not None else 0) + (bh if bh is not None else 0)
        bs = _split(np.broadcast_to(b, (wi.shape[0],)), 4)
        for gate, w_i, w_h, b_g in zip(FLAX_LSTM_GATES, _split(wi, 4), _split(wh, 4), bs, strict=True):
            out[f"{_FLAX_LSTM_IN[gate]}.kernel"] = w_i.T
            out[f"h{gate}.kernel"] = w_h.T
            out[f"h{gate}.bias"] = b_g
        return out
    # flax_fused
    h = wh.shape[1]
    out = {"dense_i.kernel": wi.T, "dense_h.kernel": wh.T}
    if kind == "lstm":  # nnx.OptimizedLSTMCell: the bias sits on dense_h
        out["dense_h.bias"] = (bi if bi is not None else 0) + (bh if bh is not None else 0) + np.zeros(4 * h, wi.dtype)
    else:  # GRU / simple cell: the bias sits on dense_i; torch's b_hn multiplies r, so it cannot be folded
        b = (bi if bi is not None else np.zeros(wi.shape[0], wi.dtype)).copy()
        if bh is not None:
            if kind == "gru":
                if np.any(bh[2 * h :] != 0):
                    raise DiptychError(
                        "torch GRU's hidden bias b_hn sits inside r * (W_hn h + b_hn), which "
                        "nnx.GRUCell cannot express; use diptych.port.nnx_layers.GRUCell"
                    )
                b[: 2 * h] += bh[: 2 * h]
            else:
                b += bh
        out["dense_i.bias"] = b
    return out


def _recurrent_to_torch(kind: str, layout: str, n: dict, cfg: dict, grad: bool) -> dict:
    if layout == "torch":
        return {"weight_ih": n["w_ih"].T, "weight_hh": n["w_hh"].T, "bias_ih": n.get("b_ih"), "bias_hh": n.get("b_hh")}
    has_bias = cfg.get("torch_bias", True)
    if layout == "flax_lstm":
        wi = np.concatenate([n[f"{_FLAX_LSTM_IN[g]}.kernel"].T for g in FLAX_LSTM_GATES])
        wh = np.concatenate([n[f"h{g}.kernel"].T for g in FLAX_LSTM_GATES])
        b = np.concatenate([n[f"h{g}.bias"] for g in FLAX_LSTM_GATES])
    else:
        wi, wh = n["dense_i.kernel"].T, n["dense_h.kernel"].T
        b = n["dense_h.bias"] if kind == "lstm" else n["dense_i.bias"]
    out = {"weight_ih": wi, "weight_hh": wh}
    if has_bias:
        # weights: the whole bias on b_ih (b_hh = 0); gradients: both receive it (adjoint of the sum)
        bh = b.copy() if grad else np.zeros_like(b)
        if kind == "gru":
            h = wh.shape[1]
            bh[2 * h :] = 0
        out.update(bias_ih=b, bias_hh=bh)
    return out


# --- attention -------------------------------------------------------------------------------------
# torch nn.MultiheadAttention: in_proj_weight (3E, E) = [W_q; W_k; W_v] (or q/k/v_proj_weight when the
# key/value sizes differ), in_proj_bias (3E,), out_proj.weight (E, E), out_proj.bias.
# nnx.MultiHeadAttention: query/key/value.kernel (E_in, heads, head_dim), .bias (heads, head_dim),
# out.kernel (heads, head_dim, E), out.bias (E,).


def _mha_to_nnx(t: dict, cfg: dict) -> dict:
    h = cfg["num_heads"]
    if "in_proj_weight" in t:
        ws = _split(t["in_proj_weight"], 3)
    else:
        ws = [t["q_proj_weight"], t["k_proj_weight"], t["v_proj_weight"]]
    bs = _split(t["in_proj_bias"], 3) if "in_proj_bias" in t else [None] * 3
    out = {}
    for name, w, b in zip(("query", "key", "value"), ws, bs, strict=True):
        e_out = w.shape[0]
        out[f"{name}.kernel"] = w.T.reshape(w.shape[1], h, e_out // h)  # (E_in, heads, head_dim)
        if b is not None:
            out[f"{name}.bias"] = b.reshape(h, e_out // h)
    wo = t["out_proj.weight"]  # (E_out, E)
    out["out.kernel"] = wo.T.reshape(h, wo.shape[1] // h, wo.shape[0])
    if "out_proj.bias" in t:
        out["out.bias"] = t["out_proj.bias"]
    return out


def _mha_to_torch(n: dict, cfg: dict) -> dict:
    ws = [n[f"{k}.kernel"].reshape(n[f"{k}.kernel"].shape[0], -1).T for k in ("query", "key", "value")]
    out = {}
    if cfg.get("packed", True):
        out["in_proj_weight"] = np.concatenate(ws)
    else:
        out.update(q_proj_weight=ws[0], k_proj_weight=ws[1], v_proj_weight=ws[2])
    if "query.bias" in n:
        out["in_proj_bias"] = np.concatenate([n[f"{k}.bias"].reshape(-1) for k in ("query", "key", "value")])
    ko = n["out.kernel"]
    out["out_proj.weight"] = ko.reshape(-1, ko.shape[-1]).T
    if "out.bias" in n:
        out["out_proj.bias"] = n["out.bias"]
    return out


def shapes_to_nnx(kind: str, shapes: dict[str, tuple], cfg: dict) -> dict[str, tuple]:
    """The NNX variable shapes a torch layer of these shapes converts to (for matching layers)."""
    try:
        zeros = {k: np.zeros(s, np.float32) for k, s in shapes.items()}
        return {k: v.shape for k, v in to_nnx(kind, zeros, cfg).items()}
    except (ValueError, KeyError, DiptychError):
        return {}


def to_torch_layout(a: np.ndarray, ref_shape: tuple, p) -> np.ndarray | None:
    """An NNX array in the torch layout of ``ref_shape`` (channels-last maps moved back), or None.
    ``p``: the conversion plan (its ``channels_last`` and ``spatial``)."""
    if p.channels_last and a.ndim == p.spatial + 2 and a.ndim == len(ref_shape):
        moved = np.moveaxis(a, -1, 1)
        if moved.shape == tuple(ref_shape):
            return moved
    return a if a.shape == tuple(ref_shape) else None

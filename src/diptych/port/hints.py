"""One-line hints for the known porting pitfalls, from the diverging layer's type and settings (neutral)."""

from __future__ import annotations

import math

import numpy as np

from diptych.port import rules


def _gelu(x: np.ndarray, tanh: bool) -> np.ndarray:
    if tanh:
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    from scipy.special import erf

    return 0.5 * x * (1 + erf(x / math.sqrt(2)))


def hints_for(
    p, tm, nm, t, n, where: str, glue=None, tcall=None, ncall=None, load=True, row=None, tcalls=None
) -> str | None:
    """A hint for torch layer ``t`` / NNX layer ``n`` diverging at ``where`` (input, output, or a row's check)."""
    from diptych.port import _nnx, _torch

    cfg = p.cfg(t, n)
    if where == "input":
        gname = type(tm.get_submodule(glue.name)).__name__ if glue is not None else ""
        src = glue
        if src is not None and src.inputs is not None and ncall is not None and ncall.inputs is not None:
            a = src.inputs
            b = rules.to_torch_layout(ncall.inputs, tcall.inputs.shape, p)
            if b is not None and b.shape == a.shape:
                if np.allclose(b, _gelu(a, True), atol=1e-5) and not np.allclose(b, _gelu(a, False), atol=1e-5):
                    return (
                        "GELU approximation: torch's nn.GELU() is exact (erf) but jax.nn.gelu defaults to "
                        "approximate=True (tanh); use jax.nn.gelu(x, approximate=False)"
                    )
                if np.allclose(b, _gelu(a, False), atol=1e-5) and not np.allclose(b, _gelu(a, True), atol=1e-5):
                    return (
                        "GELU approximation: torch uses GELU(approximate='tanh') here but the NNX twin the exact "
                        "one; use jax.nn.gelu(x, approximate=True)"
                    )
        if gname == "GELU":
            return (
                "GELU approximation: torch's nn.GELU() is exact (erf) but jax.nn.gelu defaults to approximate=True "
                "(tanh); use jax.nn.gelu(x, approximate=False)"
            )
        if (
            tcall is not None
            and ncall is not None
            and tcall.inputs is not None
            and ncall.inputs is not None
            and tcall.inputs.ndim == 2
            and tcall.inputs.shape == ncall.inputs.shape
        ):
            if np.allclose(np.sort(tcall.inputs, axis=-1), np.sort(ncall.inputs, axis=-1), atol=1e-5):
                return (
                    "flatten order: the NNX input of this layer holds the same values in another order: torch "
                    "flattens (C, H, W), a channels-last twin (H, W, C); flatten the same way (convert reorders "
                    "only the first Linear's inputs, flatten='auto')"
                )
        return (
            "look at the code between the last agreeing layer and this one: activation variants (GELU "
            "approximation, ReLU6, SiLU), the flatten order, pooling and padding, residual additions"
        )
    if t.kind in ("layernorm", "groupnorm", "rmsnorm", "batchnorm"):
        te, ne = cfg.get("eps"), cfg.get("epsilon")
        if te is not None and ne is not None and not math.isclose(te, ne, rel_tol=1e-6):
            return (
                f"norm epsilon: torch eps={te:g}, NNX epsilon={ne:g} (nnx.LayerNorm/RMSNorm default to 1e-6, "
                f"torch to 1e-5); pass epsilon={te:g}"
            )
    if t.kind == "batchnorm":
        tmod, nmod = tm.get_submodule(t.module), _module(nm, n.module)
        tmom, nmom = tmod.momentum, getattr(nmod, "momentum", None)
        if tmom is not None and nmom is not None and not math.isclose(nmom, 1 - tmom, abs_tol=1e-9):
            return (
                f"BatchNorm momentum: torch momentum={tmom:g} weights the new batch, Flax momentum weights the "
                f"old average: use nnx.BatchNorm(momentum={1 - tmom:g}), not {nmom:g}"
            )
        if where == "output" and tmod.training:
            return (
                "BatchNorm mode: torch is in train() and normalizes with the batch's statistics; the NNX layer "
                "seems to use its running averages (use_running_average=True passed at call time?)"
            )
        if row is not None and row.tensor.endswith(".var") and type(nmod).__module__.startswith("flax"):
            return (
                "BatchNorm running variance: nnx.BatchNorm stores the biased batch variance, torch the unbiased "
                "one (n / (n - 1) larger); use diptych.port.nnx_layers.BatchNorm for an exact port"
            )
        if where == "output":
            return "BatchNorm: compare momentum, epsilon and the train/eval mode of both layers"
    if t.kind == "mha" and where == "output":
        found = _attention(p, tm, nm, t, n, tcall, ncall, load)
        if found:
            return found
    if t.kind in ("lstm", "gru", "rnn") and cfg.get("nnx") != "torch":
        return (
            f"recurrent biases: {n.cls} has one bias per gate where torch has two (b_ih + b_hh): forward "
            f"passes and gradients agree, but every torch step moves the sum twice as far; use "
            f"diptych.port.nnx_layers.{t.kind.upper() if t.kind != 'lstm' else 'LSTM'}Cell for an exact port"
        )
    if not load:  # a hand conversion: see which known mistake its weights match
        have, want = _nnx.get(nm, n), rules.to_nnx(t.kind, _torch.get(tm, t), cfg)
        if t.kind == "conv_transpose":
            w = _torch.get(tm, t)["weight"]
            plain = w.transpose(*range(2, w.ndim), 0, 1)
            if "kernel" in have and have["kernel"].shape == plain.shape and np.allclose(have["kernel"], plain):
                return (
                    "transposed conv kernel: torch's (I, O, kH, kW) kernel is applied flipped; for "
                    "nnx.ConvTranspose(transpose_kernel=False) flip its spatial axes, or pass "
                    "transpose_kernel=True with the kernel as (kH, kW, O, I)"
                )
        if t.kind == "linear" and cfg.get("flatten") and "kernel" in have:
            if np.allclose(have["kernel"], _torch.get(tm, t)["weight"].T):
                return (
                    "flatten order: this Linear follows a conv stack; torch flattens (C, H, W) and the "
                    "channels-last twin (H, W, C), so its input features must be reordered (convert does it)"
                )
        bad = [k for k in want if k in have and not np.allclose(have[k], want[k])]
        if bad:
            return f"this layer's {bad[0]} is not the torch weight in NNX layout; let diptych.port.convert move it"
    if t.kind in ("conv", "conv_transpose"):
        tp, npd = t.config.get("padding"), n.config.get("padding")
        strides = n.config.get("strides")
        if isinstance(npd, str) and npd.upper() == "SAME" and np.any(np.asarray(strides if strides else 1) > 1):
            return (
                f"padding: Flax 'SAME' with stride > 1 pads more at the end than at the start; torch "
                f"padding={tp} pads both sides equally: pass padding=[(p, p)] * ndim"
            )
        return (
            f"padding or stride: torch padding={tp}, stride={t.config.get('stride')}; NNX padding={npd}, "
            f"strides={strides}, kernel_dilation={n.config.get('kernel_dilation')}"
        )
    if t.kind == "mha":
        return (
            f"attention: torch num_heads={t.config.get('num_heads')}, NNX num_heads={n.config.get('num_heads')}; "
            f"torch packs q, k, v into in_proj_weight; check batch_first and the attention mask"
        )
    return None


PACKING = (
    "attention packing: torch's MultiheadAttention keeps q, k and v in one packed in_proj_weight (3E, E), "
    "[W_q; W_k; W_v] on dim 0, where nnx.MultiHeadAttention has separate query, key and value kernels "
    "(E, heads, E // heads): query.kernel = W_q.T.reshape(E, heads, E // heads), and likewise for key and "
    "value (diptych.port.convert does it)"
)


def _attention(p, tm, nm, t, n, tcall, ncall, load) -> str | None:
    """Which classic attention mistake gives the NNX output: the torch layer's output under that mistake was
    recorded (``_trace._attention_mistakes``), or the hand-made weights are a wrong split of in_proj_weight."""
    if ncall is not None and ncall.output is not None and tcall is not None:
        for name, alt in tcall.alt.items():
            b = rules.to_torch_layout(ncall.output, alt.shape, p)
            if b is not None and np.allclose(b, alt, atol=1e-5, rtol=1e-4):
                if name == "masks":
                    return (
                        "mask polarity: a boolean torch attn_mask (and key_padding_mask) is True where attention "
                        "is blocked; JAX's and NNX's masks are True where it is allowed: pass ~mask (for a "
                        "key_padding_mask (B, S): ~kpm[:, None, None, :])"
                    )
                return (
                    "batch_first: this torch MultiheadAttention has batch_first=False and reads (T, B, E); "
                    "nnx.MultiHeadAttention reads (B, T, E): swap axes 0 and 1 before and after it "
                    "(jnp.swapaxes(x, 0, 1)), or build the torch layer with batch_first=True"
                )
    if not load:
        from diptych.port import _nnx, _torch

        have, w = _nnx.get(nm, n), _torch.get(tm, t)
        if "in_proj_weight" in w and "query.kernel" in have:
            blocks = np.split(w["in_proj_weight"], 3)
            q = have["query.kernel"]
            if any(b.size == q.size and np.allclose(q, b.reshape(q.shape)) for b in blocks):
                return PACKING + "; the kernels here are W.reshape(...) of the blocks, not W.T"
            return PACKING
    return None


def _module(model, path: str):
    m = model
    for part in path.split(".") if path else []:
        m = m[int(part)] if part.isdigit() else getattr(m, part)
    return m

"""(private) Translation rules for torch's functional layers and pooling: ``F.linear``, ``F.embedding``,
``F.pad``, ``F.scaled_dot_product_attention``, max/avg pooling (adaptive included) on channels-last maps
(numpy only; see :mod:`._ops`)."""

from __future__ import annotations

from diptych.port._fx import Refusal
from diptych.port._ops import RULES, arg, rule

# --- functional layers -------------------------------------------------------------------------------


@rule("linear")
def _linear(e, a, k):
    x, w, b = e.cf(a[0]), e.cf(arg(a, k, 1, "weight")), arg(a, k, 2, "bias")
    return f"{e.wrap(x)} @ {e.wrap(w)}.T" + ("" if b is None else f" + {e.wrap(e.cf(b))}"), False


@rule("layer_norm")
def _layer_norm(e, a, k):
    x, shape = a[0], arg(a, k, 1, "normalized_shape")
    w, b, eps = arg(a, k, 2, "weight"), arg(a, k, 3, "bias"), arg(a, k, 4, "eps", 1e-5)
    if len(shape.v if hasattr(shape, "v") else shape) != 1:
        raise Refusal(f"no rule for F.layer_norm over {len(shape)} dimensions at {e.where}; no file written")
    x = e.cf(x)
    y = f"({x} - {x}.mean(-1, keepdims=True)) * jax.lax.rsqrt({x}.var(-1, keepdims=True) + {e.lit(eps)})"
    y += "" if w is None else f" * {e.wrap(e.cf(w))}"
    y += "" if b is None else f" + {e.wrap(e.cf(b))}"
    return y, False


@rule("embedding")
def _embedding(e, a, k):
    return f"{e.wrap(e.cf(a[1]))}[{e.cf(a[0])}]", False


@rule("one_hot")
def _one_hot(e, a, k):
    n = arg(a, k, 1, "num_classes", -1)
    if n == -1:
        raise Refusal(f"no rule for F.one_hot without num_classes at {e.where}; no file written")
    return f"jax.nn.one_hot({e.cf(a[0])}, {e.lit(n)}, dtype=jnp.int32)", False


@rule("pad")
def _pad(e, a, k):
    x, r = e.cf(a[0]), e.rank(a[0])
    pad, mode = arg(a, k, 1, "pad"), arg(a, k, 2, "mode", "constant")
    value = arg(a, k, 3, "value", None) or 0.0
    if mode != "constant":
        raise Refusal(f"no rule for F.pad(mode={mode!r}) at {e.where}; no file written")
    pairs = [(0, 0)] * r
    for i in range(len(pad) // 2):
        pairs[r - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    if any(p < 0 for pr in pairs for p in pr):
        raise Refusal(f"no rule for F.pad with negative padding at {e.where}; no file written")
    return f"jnp.pad({x}, {tuple(pairs)}, constant_values={e.lit(value)})", False


@rule("normalize")
def _normalize(e, a, k):
    x, p, d = e.cf(a[0]), arg(a, k, 1, "p", 2.0), arg(a, k, 2, "dim", 1)
    eps = arg(a, k, 3, "eps", 1e-12)
    norm = f"jnp.linalg.norm({x}, ord={e.lit(p)}, axis={d}, keepdims=True)"
    return f"{x} / jnp.maximum({norm}, {e.lit(eps)})", False


@rule("scaled_dot_product_attention")
def _sdpa(e, a, k):
    q, kk, v = a[0], arg(a, k, 1, "key"), arg(a, k, 2, "value")
    mask, p = arg(a, k, 3, "attn_mask"), arg(a, k, 4, "dropout_p", 0.0)
    causal, scale = arg(a, k, 5, "is_causal", False), arg(a, k, 6, "scale")
    if p:
        raise Refusal(
            f"no rule for scaled_dot_product_attention(dropout_p={p}) at {e.where} (jax.nn.dot_product_attention "
            f"has no dropout); no file written"
        )
    if e.rank(q) != 4 or k.get("enable_gqa"):
        raise Refusal(f"no rule for scaled_dot_product_attention on {e.rank(q)}-d inputs at {e.where}; no file written")
    # torch: (B, heads, T, head_dim); jax.nn.dot_product_attention: (B, T, heads, head_dim)
    qkv = ", ".join(f"jnp.swapaxes({e.cf(t)}, 1, 2)" for t in (q, kk, v))
    extra = ""
    if mask is not None:
        m = e.cf(mask)
        m = m if e.rank(mask) == 4 else f"{e.wrap(m)}[{'None, ' * (4 - e.rank(mask))}...]"
        # a boolean torch mask is True where attended, as jax's; a float one is added to the scores
        extra += f", mask={m}" if e.dtype_of(mask.v) == "bool" else f", bias={m}"
    if causal:
        extra += ", is_causal=True"
    if scale is not None:
        extra += f", scale={e.lit(scale)}"
    return f"jnp.swapaxes(jax.nn.dot_product_attention({qkv}{extra}), 1, 2)", False


# --- pooling (channels-last, as flax pools) ----------------------------------------------------------


def _tuple(x, n):
    return tuple(x) if isinstance(x, (tuple, list)) else (x,) * n


def pool(e, kind, x, n, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, count_include_pad=True):
    if ceil_mode or _tuple(dilation, n) != (1,) * n:
        raise Refusal(f"no rule for {kind} pooling with ceil_mode or dilation at {e.where}; no file written")
    k = _tuple(kernel_size, n)
    s = _tuple(stride if stride not in (None, []) else kernel_size, n)
    p = _tuple(padding, n)
    pad = "" if p == (0,) * n else f", padding={tuple((q, q) for q in p)}"
    inc = "" if kind == "max" or count_include_pad or p == (0,) * n else ", count_include_pad=False"
    return f"nnx.{kind}_pool({e.cl(x)}, window_shape={k}, strides={s}{pad}{inc})", True


def _pool(kind, n):
    def f(e, a, k):
        if arg(a, k, 6 if kind == "max" else 5, "return_indices" if kind == "max" else "divisor_override"):
            raise Refusal(f"no rule for {e.op} with return_indices/divisor_override at {e.where}; no file written")
        names = ["kernel_size", "stride", "padding"] + (
            ["dilation", "ceil_mode"] if kind == "max" else ["ceil_mode", "count_include_pad"]
        )
        kw = {nm: arg(a, k, i + 1, nm) for i, nm in enumerate(names) if arg(a, k, i + 1, nm) is not None}
        return pool(e, kind, a[0], n, **kw)

    return f


def adaptive(e, kind, x, n, size):
    shape = e.shape(x)[2:]
    out = tuple(s if o is None else o for s, o in zip(shape, _tuple(size, n)))
    if all(o == 1 for o in out):
        fn = "mean" if kind == "avg" else "max"
        axes = 1 if n == 1 else tuple(range(1, n + 1))
        return f"jnp.{fn}({e.cl(x)}, axis={axes}, keepdims=True)", True
    if any(s % o for s, o in zip(shape, out)):
        raise Refusal(
            f"no rule for adaptive {kind} pooling from {tuple(shape)} to {out} (uneven windows) at {e.where}; "
            f"no file written"
        )
    k = tuple(s // o for s, o in zip(shape, out))
    return f"nnx.{kind}_pool({e.cl(x)}, window_shape={k}, strides={k})", True


def _adaptive(kind, n):
    def f(e, a, k):
        if arg(a, k, 2, "return_indices"):
            raise Refusal(f"no rule for {e.op} with return_indices at {e.where}; no file written")
        return adaptive(e, kind, a[0], n, arg(a, k, 1, "output_size"))

    return f


for _n in (1, 2):
    RULES[f"max_pool{_n}d"] = _pool("max", _n)
    RULES[f"avg_pool{_n}d"] = _pool("avg", _n)
    RULES[f"adaptive_avg_pool{_n}d"] = _adaptive("avg", _n)
    RULES[f"adaptive_max_pool{_n}d"] = _adaptive("max", _n)

"""(private) Translation rules for torch functions and tensor methods: each writes one JAX expression with
PyTorch's semantics (numpy only; the emitter hands it the values).

A rule is ``rule(e, a, k) -> (expression, channels_last)``: ``a``/``k`` are the call's arguments, with
traced values as :class:`~diptych.port._emit.Val`. Tensors that came out of a convolution may be held
channels-last (``Val.cl``); a rule asks for the layout it needs (``e.cf``: torch's, ``e.cl``: channels-last)
and the emitter writes the transpose. Elementwise rules keep the layout they were given; reductions and
``cat`` over a channels-last tensor move their axes; everything else works in torch's layout.
"""

from __future__ import annotations

import math
import operator

from diptych.port._fx import Refusal

RULES: dict[str, object] = {}

JDTYPES = {
    "float32": "jnp.float32",
    "float64": "jnp.float32",
    "float16": "jnp.float16",
    "bfloat16": "jnp.bfloat16",
    "int64": "jnp.int32",
    "int32": "jnp.int32",
    "int16": "jnp.int16",
    "int8": "jnp.int8",
    "uint8": "jnp.uint8",
    "bool": "jnp.bool_",
}


class Val:
    """An emitted value: its expression (a variable, or an inline one for numbers), its value on the example
    inputs, and whether a tensor is held channels-last (a tuple of flags for a tuple)."""

    __slots__ = ("expr", "v", "cl")

    def __init__(self, expr, v, cl=False):
        self.expr, self.v, self.cl = expr, v, cl


class Alias:
    """A rule's answer when the operation computes nothing new (``contiguous``, ``Identity``)."""

    def __init__(self, val):
        self.val = val


def rule(*names):
    def deco(f):
        for n in names:
            RULES[n] = f
        return f

    return deco


def arg(a, k, i, name, default=None):
    if name in k:
        return k[name]
    return a[i] if len(a) > i else default


def _dims(d, rank):
    if d is None:
        return None
    d = list(d) if isinstance(d, (tuple, list)) else [d]
    return [x % rank if rank else x for x in d]


def phys(d: int, rank: int) -> int:
    """A torch dim's position in the channels-last tensor: 0 stays, 1 goes last, the rest move down one."""
    d %= rank
    return 0 if d == 0 else rank - 1 if d == 1 else d - 1


def _axis(dims):
    return None if dims is None else dims[0] if len(dims) == 1 else tuple(dims)


# --- elementwise -------------------------------------------------------------------------------------

UNARY = {
    "relu": "jax.nn.relu",
    "silu": "jax.nn.silu",
    "tanh": "jnp.tanh",
    "sigmoid": "jax.nn.sigmoid",
    "exp": "jnp.exp",
    "log": "jnp.log",
    "sqrt": "jnp.sqrt",
    "rsqrt": "jax.lax.rsqrt",
    "abs": "jnp.abs",
    "sin": "jnp.sin",
    "cos": "jnp.cos",
    "erf": "jax.scipy.special.erf",
    "softplus": "jax.nn.softplus",
    "relu6": "jax.nn.relu6",
    "square": "jnp.square",
    "detach": "jax.lax.stop_gradient",
    "logical_not": "jnp.logical_not",
}


def elementwise(e, a):
    """Tensors of an elementwise op: kept channels-last only if every tensor of rank >= 3 is, and no other
    tensor of rank >= 1 would broadcast against the moved axes."""
    ts = [v for v in a if e.is_tensor(v)]
    big = [v for v in ts if e.rank(v) >= 3]
    keep = bool(big) and all(v.cl for v in big) and all(e.rank(v) == 0 or v in big for v in ts)
    keep = keep and len({e.rank(v) for v in big}) == 1
    return keep, [e.cl(v) if (keep and v in big) else e.cf(v) if e.is_tensor(v) else e.lit(v) for v in a]


def _unary(fn):
    def f(e, a, k):
        keep, (x,) = elementwise(e, a[:1])
        return f"{fn}({x})", keep

    return f


for _name, _fn in UNARY.items():
    RULES[_name] = _unary(_fn)


@rule("gelu")
def _gelu(e, a, k):
    keep, (x,) = elementwise(e, a[:1])
    tanh = arg(a, k, 1, "approximate", "none") == "tanh"
    return f"jax.nn.gelu({x}, approximate={tanh})", keep


@rule("leaky_relu")
def _leaky(e, a, k):
    keep, (x,) = elementwise(e, a[:1])
    return f"jax.nn.leaky_relu({x}, negative_slope={e.lit(arg(a, k, 1, 'negative_slope', 0.01))})", keep


@rule("elu")
def _elu(e, a, k):
    keep, (x,) = elementwise(e, a[:1])
    return f"jax.nn.elu({x}, alpha={e.lit(arg(a, k, 1, 'alpha', 1.0))})", keep


@rule("dropout")
def _dropout(e, a, k):
    p, training = arg(a, k, 1, "p", 0.5), arg(a, k, 2, "training", True)
    if p and training:
        raise Refusal(
            f"no rule for F.dropout(p={p}) in training at {e.where}: use an nn.Dropout module (it becomes "
            f"nnx.Dropout); no file written"
        )
    return e.alias(a[0])


@rule("contiguous", "clone", "float", "identity")
def _same(e, a, k):
    return e.alias(a[0])


@rule("to", "type", "type_as", "long", "int", "bool", "half", "double")
def _cast(e, a, k):
    dtype = e.dtype_of(e.current_value())
    if dtype is None or dtype == e.dtype_of(a[0].v):
        return e.alias(a[0])
    keep, (x,) = elementwise(e, a[:1])
    return f"{x}.astype({e.jdtype(dtype)})", keep


@rule("clamp", "clip")
def _clamp(e, a, k):
    keep, (x,) = elementwise(e, a[:1])
    lo, hi = arg(a, k, 1, "min"), arg(a, k, 2, "max")
    return f"jnp.clip({x}, {e.lit(lo)}, {e.lit(hi)})", keep


_BINARY = {
    "add": "+",
    "iadd": "+",
    "sub": "-",
    "isub": "-",
    "mul": "*",
    "imul": "*",
    "truediv": "/",
    "div": "/",
    "itruediv": "/",
    "floordiv": "//",
    "mod": "%",
    "pow": "**",
    "eq": "==",
    "ne": "!=",
    "lt": "<",
    "le": "<=",
    "gt": ">",
    "ge": ">=",
    "and_": "&",
    "or_": "|",
    "xor": "^",
    "bitwise_and": "&",
    "bitwise_or": "|",
    "logical_and": "&",
    "logical_or": "|",
}


def _binary(op):
    def f(e, a, k):
        if k.get("rounding_mode") is not None:
            raise Refusal(f"no rule for div(rounding_mode=...) at {e.where}; no file written")
        x, y = a[0], arg(a, k, 1, "other")
        if not e.is_tensor(x) and not e.is_tensor(y):  # sizes and Python numbers
            return e.binop(x, op, y), False
        alpha = k.get("alpha", 1)
        keep, (xs, ys) = elementwise(e, [x, y])
        if alpha != 1:
            ys = f"{e.lit(alpha)} * {e.wrap(ys)}"
        return f"{e.wrap(xs)} {op} {e.wrap(ys)}", keep

    return f


for _name, _op in _BINARY.items():
    RULES[_name] = _binary(_op)


@rule("neg")
def _neg(e, a, k):
    if not e.is_tensor(a[0]):
        return f"-{e.wrap(e.lit(a[0]))}", False
    keep, (x,) = elementwise(e, a[:1])
    return f"-{e.wrap(x)}", keep


@rule("invert", "bitwise_not")
def _invert(e, a, k):
    keep, (x,) = elementwise(e, a[:1])
    return f"~{e.wrap(x)}", keep


@rule("where")
def _where(e, a, k):
    keep, xs = elementwise(e, a[:3])
    return f"jnp.where({', '.join(xs)})", keep


@rule("masked_fill")
def _masked_fill(e, a, k):
    keep, (x, m, v) = elementwise(e, [a[0], arg(a, k, 1, "mask"), arg(a, k, 2, "value")])
    return f"jnp.where({m}, {v}, {x})", keep


@rule("maximum", "minimum")
def _maxmin(e, a, k):
    keep, (x, y) = elementwise(e, a[:2])
    return f"jnp.{e.op}({x}, {y})", keep


@rule("matmul", "bmm", "mm")
def _matmul(e, a, k):
    return f"{e.wrap(e.cf(a[0]))} @ {e.wrap(e.cf(a[1]))}", False


@rule("einsum")
def _einsum(e, a, k):
    ops = a[1] if len(a) == 2 and isinstance(a[1], (list, tuple)) else a[1:]
    return f"jnp.einsum({e.lit(a[0])}, {', '.join(e.cf(v) for v in ops)})", False


# --- reductions --------------------------------------------------------------------------------------


def _reduce(fn, ddof=False):
    def f(e, a, k):
        x = a[0]
        r = e.rank(x)
        dims = _dims(arg(a, k, 1, "dim"), r) if r else None
        keepdim = arg(a, k, 2, "keepdim", False)
        cl = x.cl and r >= 3
        src = e.cl(x) if cl else e.cf(x)
        if cl and dims is not None:
            dims = [phys(d, r) for d in dims]
        kw = "" if dims is None else f", axis={_axis(dims)}"
        if keepdim:
            kw += ", keepdims=True"
        if ddof:
            corr = k.get("correction", 1 if k.get("unbiased", arg(a, k, 2, "unbiased", True)) else 0)
            kw += f", ddof={corr}" if corr else ""
        out_cl = cl and (keepdim or (dims is not None and r - len(dims) >= 3 and (r - 1) not in dims))
        if cl and not out_cl and dims is not None and (r - 1) not in dims and r - len(dims) > 2:
            raise Refusal(f"no rule for this reduction of a channels-last map at {e.where}; no file written")
        return f"jnp.{fn}({src}{kw})", out_cl

    return f


for _name, _fn in {"mean": "mean", "sum": "sum", "amax": "max", "amin": "min", "prod": "prod"}.items():
    RULES[_name] = _reduce(_fn)
RULES["var"] = _reduce("var", ddof=True)
RULES["std"] = _reduce("std", ddof=True)
RULES["logsumexp"] = _reduce("logsumexp")


@rule("max", "min")
def _max(e, a, k):
    dim = arg(a, k, 1, "dim")
    if len(a) > 1 and e.is_tensor(a[1]):  # torch.max(x, y): elementwise
        keep, (x, y) = elementwise(e, a[:2])
        return f"jnp.{'maximum' if e.op == 'max' else 'minimum'}({x}, {y})", keep
    if dim is None:
        return f"jnp.{e.op}({e.cf(a[0])})", False
    d, kd = dim % e.rank(a[0]), arg(a, k, 2, "keepdim", False)
    x, kw = e.cf(a[0]), f"axis={d}" + (", keepdims=True" if kd else "")
    return f"(jnp.{e.op}({x}, {kw}), jnp.arg{e.op}({x}, {kw}))", False


@rule("argmax", "argmin")
def _argmax(e, a, k):
    d = arg(a, k, 1, "dim")
    kw = "" if d is None else f", axis={d % e.rank(a[0])}"
    return f"jnp.{e.op}({e.cf(a[0])}{kw}{', keepdims=True' if arg(a, k, 2, 'keepdim') else ''})", False


def _softmax(fn):
    def f(e, a, k):
        x, r = a[0], e.rank(a[0])
        d = arg(a, k, 1, "dim")
        if d is None:
            raise Refusal(f"no rule for {e.op} without dim= at {e.where}; no file written")
        if x.cl and r >= 3:
            return f"{fn}({e.cl(x)}, axis={phys(d, r)})", True
        return f"{fn}({e.cf(x)}, axis={d})", False

    return f


RULES["softmax"] = _softmax("jax.nn.softmax")
RULES["log_softmax"] = _softmax("jax.nn.log_softmax")


# --- sizes: Python numbers ---------------------------------------------------------------------------


def math_rule(e, name, a):
    return f"math.{name}({', '.join(e.lit(x) for x in a)})"


FLOAT_NAMES = {"inf": "jnp.inf", "-inf": "-jnp.inf", "nan": "jnp.nan"}


def literal(x) -> str | None:
    """A Python constant as source, or None."""
    if isinstance(x, bool) or x is None or isinstance(x, (int, str)):
        return repr(x)
    if isinstance(x, float):
        return FLOAT_NAMES.get(repr(x), repr(x)) if not math.isfinite(x) else repr(x)
    if x is Ellipsis:
        return "..."
    return None


def canonical(node) -> tuple[str, str]:
    """``(namespace, name)`` of an operation: ``op`` (Python operators), ``math`` or ``torch``."""
    t = node.target
    if node.op == "call_method":
        return "torch", t[:-1] if t.endswith("_") and not t.endswith("__") else t
    mod = getattr(t, "__module__", "") or ""
    name = getattr(t, "__name__", str(t))
    if t in (operator.getitem, getattr):
        return "op", name
    if mod in ("_operator", "operator"):
        return "op", name
    if mod == "math":
        return "math", name
    return "torch", name


def atomic(s: str) -> bool:
    depth, quote = 0, None
    for i, ch in enumerate(s):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and (ch in " +*/%<>=&|^~@" or (ch == "-" and i == 0)):
            return False
    return True

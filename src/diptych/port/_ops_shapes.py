"""(private) Translation rules for shapes and creation: view/reshape, flatten, permute, split, cat, indexing,
sizes, ``torch.arange``... (numpy only; see :mod:`._ops` for how a rule is written). They work in torch's
layout, except ``flatten`` of a channels-last map whose spatial dims are 1 and ``cat`` along channels."""

from __future__ import annotations

from diptych.port._fx import Refusal
from diptych.port._ops import RULES, _axis, _dims, arg, rule

# --- shapes ------------------------------------------------------------------------------------------


@rule("size")
def _size(e, a, k):
    d = arg(a, k, 1, "dim")
    x = e.cf_name(a[0])
    return (f"{x}.shape" if d is None else f"{x}.shape[{e.lit(d)}]"), False


@rule("dim")
def _ndim(e, a, k):
    return f"{e.cf_name(a[0])}.ndim", False


@rule("numel")
def _numel(e, a, k):
    return f"{e.cf_name(a[0])}.size", False


def _shape_args(e, a, start=1):
    shape = a[start] if len(a) == start + 1 and isinstance(a[start], (tuple, list)) else a[start:]
    return ", ".join(e.lit(s) for s in shape)


@rule("view", "reshape")
def _view(e, a, k):
    if len(a) == 2 and not isinstance(a[1], (tuple, list)) and not e.is_int(a[1]):
        raise Refusal(f"no rule for view(dtype) at {e.where}; no file written")
    shape = k.get("shape")
    return f"{e.cf(a[0])}.reshape({_shape_args(e, [a[0], shape] if shape is not None else a)})", False


@rule("flatten")
def _flatten(e, a, k):
    x, r = a[0], e.rank(a[0])
    s, t = arg(a, k, 1, "start_dim", 0) % max(r, 1), arg(a, k, 2, "end_dim", -1) % max(r, 1)
    shape = e.shape(x)
    if x.cl and r >= 3 and s == 1 and t == r - 1 and all(n == 1 for n in shape[2:]):
        src = e.cl(x)  # (B, 1, .., 1, C): the same order either way
    else:
        src = e.cf(x)
    if s == t:
        return e.alias(x) if not x.cl else (src, False)
    lead = "".join(f"{src}.shape[{i}], " for i in range(s))
    tail = "".join(f", {src}.shape[{i}]" for i in range(t + 1, r))
    return f"{src}.reshape({lead}-1{tail})", False


@rule("unflatten")
def _unflatten(e, a, k):
    x, r = e.cf(a[0]), e.rank(a[0])
    d, sizes = arg(a, k, 1, "dim") % r, arg(a, k, 2, "sizes")
    lead = "".join(f"{x}.shape[{i}], " for i in range(d))
    tail = "".join(f", {x}.shape[{i}]" for i in range(d + 1, r))
    return f"{x}.reshape({lead}{', '.join(e.lit(s) for s in sizes)}{tail})", False


@rule("permute")
def _permute(e, a, k):
    dims = a[1] if len(a) == 2 and isinstance(a[1], (tuple, list)) else a[1:]
    dims = k.get("dims", dims)
    return f"jnp.transpose({e.cf(a[0])}, {tuple(d % e.rank(a[0]) for d in dims)})", False


@rule("transpose", "swapaxes")
def _transpose(e, a, k):
    return f"jnp.swapaxes({e.cf(a[0])}, {e.lit(arg(a, k, 1, 'dim0'))}, {e.lit(arg(a, k, 2, 'dim1'))})", False


@rule("t", "T", "mT")
def _t(e, a, k):
    return f"jnp.swapaxes({e.cf(a[0])}, -1, -2)", False


@rule("squeeze")
def _squeeze(e, a, k):
    x, shape = a[0], e.shape(a[0])
    d = arg(a, k, 1, "dim")
    dims = [i for i, n in enumerate(shape) if n == 1] if d is None else _dims(d, len(shape))
    dims = [i for i in dims if shape[i] == 1]  # torch leaves a dim that is not 1 alone
    if not dims:
        return e.alias(x)
    return f"jnp.squeeze({e.cf(x)}, {_axis(dims)})", False


@rule("unsqueeze")
def _unsqueeze(e, a, k):
    return f"jnp.expand_dims({e.cf(a[0])}, {e.lit(arg(a, k, 1, 'dim'))})", False


@rule("expand")
def _expand(e, a, k):
    x = a[0]
    sizes = a[1] if len(a) == 2 and isinstance(a[1], (tuple, list)) else a[1:]
    src, r, n = e.cf(x), e.rank(x), len(sizes)
    keep = [isinstance(s, int) and s == -1 for s in sizes]
    k = n - next((i for i, kept in enumerate(reversed(keep)) if not kept), n)  # the trailing -1s
    if k < n and n == r and k > 0:
        return f"jnp.broadcast_to({src}, ({', '.join(e.lit(s) for s in sizes[:k])}, *{src}.shape[{k}:]))", False
    out = [f"{src}.shape[{i - (n - r)}]" if kept else e.lit(s) for i, (s, kept) in enumerate(zip(sizes, keep))]
    return f"jnp.broadcast_to({src}, ({', '.join(out)}{',' if n == 1 else ''}))", False


@rule("expand_as", "broadcast_to")
def _expand_as(e, a, k):
    other = a[1]
    target = f"{e.cf_name(other)}.shape" if e.is_tensor(other) else e.lit(other)
    return f"jnp.broadcast_to({e.cf(a[0])}, {target})", False


@rule("repeat")
def _repeat(e, a, k):
    reps = a[1] if len(a) == 2 and isinstance(a[1], (tuple, list)) else a[1:]
    return f"jnp.tile({e.cf(a[0])}, ({', '.join(e.lit(r) for r in reps)},))", False


def _split_points(sizes, total):
    pts, acc = [], 0
    for s in sizes[:-1]:
        acc += s
        pts.append(acc)
    return pts


@rule("split")
def _split(e, a, k):
    x, r = a[0], e.rank(a[0])
    size, d = arg(a, k, 1, "split_size_or_sections"), arg(a, k, 2, "dim", 0) % r
    n = e.shape(x)[d]
    if isinstance(size, (list, tuple)):
        return f"jnp.split({e.cf(x)}, {_split_points([int(s) for s in size], n)}, axis={d})", False
    s = int(size.v if hasattr(size, "v") else size)
    if n % s == 0:
        return f"jnp.split({e.cf(x)}, {n // s}, axis={d})", False
    return f"jnp.split({e.cf(x)}, {list(range(s, n, s))}, axis={d})", False


@rule("chunk")
def _chunk(e, a, k):
    x, r = a[0], e.rank(a[0])
    c, d = arg(a, k, 1, "chunks"), arg(a, k, 2, "dim", 0) % r
    n = e.shape(x)[d]
    if n % c == 0:
        return f"jnp.split({e.cf(x)}, {c}, axis={d})", False
    s = -(-n // c)
    return f"jnp.split({e.cf(x)}, {list(range(s, n, s))}, axis={d})", False


@rule("unbind")
def _unbind(e, a, k):
    d = arg(a, k, 1, "dim", 0) % e.rank(a[0])
    return f"jnp.unstack({e.cf(a[0])}, axis={d})", False


def _join(fn):
    def f(e, a, k):
        ts = arg(a, k, 0, "tensors")
        d = arg(a, k, 1, "dim", 0)
        r = e.rank(ts[0]) + (1 if fn == "stack" else 0)
        if fn == "concatenate" and all(v.cl for v in ts) and r >= 3 and d % r == 1:
            return f"jnp.concatenate([{', '.join(e.cl(v) for v in ts)}], axis=-1)", True
        return f"jnp.{fn}([{', '.join(e.cf(v) for v in ts)}], axis={d})", False

    return f


RULES["cat"] = RULES["concat"] = RULES["concatenate"] = _join("concatenate")
RULES["stack"] = _join("stack")


@rule("getitem")
def _getitem(e, a, k):
    x, idx = a
    if not e.is_tensor(x):  # a tuple or a size: indexed as it is
        return f"{e.cf_name(x) if hasattr(x, 'expr') else e.lit(x)}[{e.index(idx)}]", False
    return f"{e.wrap(e.cf(x))}[{e.index(idx)}]", False


@rule("getattr")
def _getattr(e, a, k):
    x, name = a
    if name == "shape":
        return f"{e.cf_name(x)}.shape", False
    if name in ("ndim", "dtype"):
        return f"{e.cf_name(x)}.{name}", False
    if name in ("T", "mT"):
        return _t(e, [x], {})
    raise Refusal(f"no rule for the tensor attribute .{name} at {e.where}; no file written")


# --- creation ----------------------------------------------------------------------------------------


def _dtype_kw(e, k):
    d = k.get("dtype")
    return "" if d is None else f", dtype={e.jdtype(d)}"


@rule("arange")
def _arange(e, a, k):
    lims = [arg(a, k, 0, "start"), arg(a, k, 1, "end"), arg(a, k, 2, "step")]
    lims = [x for x in lims if x is not None]
    return f"jnp.arange({', '.join(e.lit(x) for x in lims)}{_dtype_kw(e, k)})", False


def _full(fn):
    def f(e, a, k):
        shape = a[0] if len(a) == 1 and isinstance(a[0], (tuple, list)) else a
        fill = ""
        if fn == "full":
            shape, fill = a[0], f", {e.lit(a[1])}"
        return f"jnp.{fn}({e.lit(tuple(shape))}{fill}{_dtype_kw(e, k)})", False

    return f


RULES["zeros"], RULES["ones"], RULES["full"] = _full("zeros"), _full("ones"), _full("full")


@rule("zeros_like", "ones_like")
def _like(e, a, k):
    return f"jnp.{e.op}({e.cf(a[0])}{_dtype_kw(e, k)})", False


@rule("tril", "triu")
def _tri(e, a, k):
    return f"jnp.{e.op}({e.cf(a[0])}, {e.lit(arg(a, k, 1, 'diagonal', 0))})", False

"""(private, imports torch) One traced instance's ``__call__`` written as JAX: one line per operation, with
the shape each gives as a comment.

Values keep their variable name while they flow through a chain (``x = self.conv1(x)``), a tensor that is
used again keeps its own. Maps out of a convolution stay channels-last until an operation needs torch's
layout (a transpose is then written once, and remembered). A run of calls through a ``Sequential`` or a
``ModuleList`` becomes one call, or a ``for`` loop, when no transpose is needed inside it.
"""

from __future__ import annotations

import operator
import re

import torch
import torch.fx as fx

from diptych.port import _chains, _fx, _layers, _ops, _ops_nn, _ops_shapes  # noqa: F401  (rules register)
from diptych.port._fx import Refusal, is_user, source_line
from diptych.port._ops import JDTYPES, Alias, Val, atomic, canonical

RESERVED = {"jax", "jnp", "nnx", "math", "functools", "nnx_layers", "self", "rngs", "dataclasses", "lambda"}
SIZE_OPS = {"size", "dim", "numel", "getattr"}


class Emitter:
    """Writes ``__call__`` for one traced instance. ``cx`` (the class writer) answers for child classes,
    attribute paths and tied weights; ``in_cl``: which tensor arguments arrive channels-last."""

    def __init__(self, cx, traced, in_cl: list, top: bool, optional=frozenset()):
        self.cx, self.t, self.top, self.optional = cx, traced, top, optional
        self.m = traced.module if traced is not None else None
        self.nodes = list(traced.graph.nodes) if traced is not None else []
        self.order = {n: i for i, n in enumerate(self.nodes)}
        self.last = {n: max((self.order[u] for u in n.users), default=self.order[n]) for n in self.nodes}
        self.lines: list[str] = []
        self.env: dict = {}
        self.bound: dict[str, set] = {}
        self.holder: dict[str, Val] = {}
        self.cache: dict = {}
        self.names: set[str] = set()
        self.in_cl = list(in_cl)
        self.params: list[str] = []
        self.out_cl: list = []
        self.sizes = 0
        self.node = None
        self.op = ""
        self.where = ""

    # --- values --------------------------------------------------------------------------------------

    def is_tensor(self, v) -> bool:
        return isinstance(v, Val) and isinstance(v.v, torch.Tensor)

    def is_int(self, v) -> bool:
        return isinstance(v.v if isinstance(v, Val) else v, int)

    def rank(self, v) -> int:
        return v.v.dim() if self.is_tensor(v) else 0

    def shape(self, v) -> tuple:
        return tuple(v.v.shape)

    def dtype_of(self, v):
        return str(v.dtype).replace("torch.", "") if isinstance(v, torch.Tensor) else None

    def jdtype(self, d) -> str:
        return JDTYPES.get(str(d).replace("torch.", ""), "jnp.float32")

    def current_value(self):
        return self.node.meta.get("value")

    def alias(self, v):
        return Alias(v)

    def wrap(self, s: str) -> str:
        return s if atomic(s) else f"({s})"

    def binop(self, x, op, y) -> str:
        a, b = self.lit(x), self.lit(y)
        if op == "+" and "0" in (a, b):  # pos + t with pos = 0
            return b if a == "0" else a
        return f"{self.wrap(a)} {op} {self.wrap(b)}"

    def fresh(self, base: str) -> str:
        base = re.sub(r"\W", "_", base).strip("_") or "v"
        base = base if not base[0].isdigit() else f"v{base}"
        if base in RESERVED:
            base += "_"
        name, i = base, 1
        while name in self.names:
            i += 1
            name = f"{base}_{i}"
        self.names.add(name)
        return name

    def _dead(self, name: str) -> bool:
        cur = self.order.get(self.node, -1)
        return all(self.last[n] <= cur for n in self.bound.get(name, ()))

    def comment(self, v, cl) -> str:
        """The shape the NNX value has: channels-last maps with the channels last."""
        s = tuple(v.shape)
        return str((s[0], *s[2:], s[1]) if cl and len(s) >= 3 else s)

    def _live(self, v: Val | None) -> Val | None:
        """``v``, or the transposed copy that took over its name."""
        if v is None or v.expr is not None:
            return v
        for cl in (True, False):
            hit = self.cache.get((id(v), cl))
            if hit is not None and hit.expr is not None and self.holder.get(hit.expr) is hit:
                return hit
        return None

    def _take(self, name: str) -> str:
        """``name`` if it is free, or held by a value not needed any more; else a numbered variant."""
        if name in RESERVED or not name.isidentifier():
            return self.fresh(name)
        held = self.holder.get(name)
        if name not in self.names or (held is not None and self._dead(name)):
            self.names.add(name)
            return name
        return self.fresh(name)

    def line(self, expr: str, v, cl, base: str, reuse: Val | None = None, nodes=None, named=True) -> Val:
        """``name = expr  # shape``: the name the torch line assigns, else that of ``reuse`` when its value is
        not needed after this node, else a fresh one."""
        reuse = self._live(reuse)
        tg = _fx.targets(self.node) if named and self.node is not None and self.node.op != "placeholder" else None
        name = None
        if tg and len(tg) == 1:
            name = self._take(tg[0])
        elif reuse is not None and isinstance(reuse.expr, str) and reuse.expr.isidentifier():
            name = reuse.expr if self.holder.get(reuse.expr) is reuse and self._dead(reuse.expr) else None
        name = name or self.fresh(base)
        comment = f"  # {self.comment(v, cl)}" if isinstance(v, torch.Tensor) else ""
        self.lines.append(f"{name} = {expr}{comment}")
        old = self.holder.get(name)
        if old is not None:
            old.expr = None
        val = Val(name, v, cl)
        self.holder[name] = val
        self.bound.setdefault(name, set()).update(nodes if nodes is not None else {self.node})
        return val

    def _convert(self, v: Val, to_cl: bool) -> str:
        if not self.is_tensor(v) or self.rank(v) < 3 or bool(v.cl) == to_cl:
            return v.expr
        key = (id(v), to_cl)
        hit = self.cache.get(key)
        if hit is not None and hit.expr is not None and self.holder.get(hit.expr) is hit:
            return hit.expr
        src, dst = (1, -1) if to_cl else (-1, 1)
        nodes = set(self.bound.get(v.expr, ()))  # the copy stands for the same values
        out = self.line(f"jnp.moveaxis({v.expr}, {src}, {dst})", v.v, to_cl, v.expr, reuse=v, nodes=nodes, named=False)
        self.cache[key] = out
        return out.expr

    def cf(self, v) -> str:
        return self._convert(v, False) if isinstance(v, Val) else self.lit(v)

    def cl(self, v) -> str:
        return self._convert(v, True) if isinstance(v, Val) else self.lit(v)

    def cf_name(self, v) -> str:
        return self.cf(v)

    def lit(self, x) -> str:
        if isinstance(x, Val):
            return self.cf(x) if self.is_tensor(x) else x.expr
        if isinstance(x, torch.dtype):
            return self.jdtype(x)
        if isinstance(x, torch.device):
            return "None"
        if isinstance(x, (tuple, list)):
            body = ", ".join(self.lit(i) for i in x)
            return f"[{body}]" if isinstance(x, list) else f"({body}{',' if len(x) == 1 else ''})"
        if isinstance(x, slice):
            return f"slice({self.lit(x.start)}, {self.lit(x.stop)}, {self.lit(x.step)})"
        s = _ops.literal(x)
        if s is None:
            raise Refusal(f"no rule for the constant {type(x).__name__} at {self.where}; no file written")
        return s

    def index(self, idx) -> str:
        items = idx if isinstance(idx, tuple) else (idx,)
        out = []
        for it in items:
            if isinstance(it, slice):
                parts = ["" if p is None else self.lit(p) for p in (it.start, it.stop, it.step)]
                out.append(":".join(parts[:2]) + (f":{parts[2]}" if parts[2] else ""))
            elif it is None:
                out.append("None")
            else:
                out.append(self.lit(it))
        return ", ".join(out) if out else "()"

    # --- the walk ------------------------------------------------------------------------------------

    def run(self) -> list[str]:
        placeholders = [n for n in self.nodes if n.op == "placeholder"]
        for n, cl in zip(placeholders, self.in_cl + [False] * len(placeholders)):
            name = self.fresh(n.target)
            self.params.append(name)
            v = n.meta.get("value")
            self.env[n] = Val(name, v, cl and isinstance(v, torch.Tensor) and v.dim() >= 3)
            self.holder[name] = self.env[n]
            self.bound.setdefault(name, set()).add(n)
        skip: set = set()
        for n in self.nodes:
            if n in self.env or n in skip or n.op == "placeholder":
                continue
            self.node, self.where = n, source_line(n)
            if n.op == "output":
                self._return(n)
            elif n.op == "get_attr":
                expr = self.cx.attr(self.t, n.target)
                expr = expr if expr.endswith(("[...]", "[...].T")) else f"{expr}[...]"
                self.env[n] = Val(expr, n.meta.get("value"))
            elif n.op == "call_module" and (chain := _chains.find(self, n)) is not None and _chains.emit(self, chain):
                skip.update(chain)
            else:
                self._emit(n)
        return _without_dead(self.lines)

    def _args(self, n):
        return fx.node.map_arg(n.args, lambda a: self.env[a]), fx.node.map_arg(n.kwargs, lambda a: self.env[a])

    def _rule(self, n):
        out = self._rule1(n)
        if n.op == "call_module" and n.target.split(".")[0] in self.optional:
            x = self.env[n.args[0]]
            if isinstance(out, Alias) or not isinstance(out, tuple) or not self.is_tensor(x):
                raise Refusal(f"no rule for the optional child {n.target!r} at {self.where}; no file written")
            src = self.cl(x) if out[1] else self.cf(x)
            attr = self.cx.attr(self.t, n.target.split(".")[0])
            return f"{src} if {attr} is None else {out[0]}", out[1]
        return out

    def _rule1(self, n):
        a, k = self._args(n)
        a, k = list(a), dict(k)
        if n.op == "call_module":
            m = self.m.get_submodule(n.target)
            if is_user(m):
                return self.cx.call_child(self, n, m, a, k)
            r = _layers.layer_rule(m)
            if r is None:
                if self.t is not None and a and self.is_tensor(a[0]):
                    self.cx.fn_inputs.setdefault(_chains.join(self.t.path, n.target), a[0].v)
                return _layers.call_function_layer(self, m, a, k)
            tied = self.cx.tied(self.t, n.target)
            if tied is not None:
                x = self.cf(a[0])
                return f"{tied}.attend({x})", False
            return r.call(self, m, self.cx.attr(self.t, n.target), a, k)
        ns, name = canonical(n)
        self.op = name
        if n.op == "call_method" and n.target.endswith("_") and not n.target.endswith("__"):
            src = n.args[0] if isinstance(n.args[0], fx.Node) else None
            if src is not None and any(self.order[u] > self.order[n] for u in src.users):
                raise Refusal(
                    f"no rule for the in-place {n.target} at {self.where} (its input is used again); no file written"
                )
        if name == "getattr" and n.args[1] == "device":  # where torch puts a tensor: JAX decides itself
            return Alias(Val("None", None))
        if ns == "math":
            if any(self.is_tensor(x) for x in a):
                raise Refusal(f"no rule for math.{name} of a tensor at {self.where}; no file written")
            return f"math.{name}({', '.join(self.lit(x) for x in a)})", False
        if name == "getitem" and isinstance(a[0], Val) and not self.is_tensor(a[0]):
            i = a[1]
            cl = a[0].cl[i] if isinstance(a[0].cl, tuple) and isinstance(i, int) else False
            return f"{self.wrap(a[0].expr)}[{self.index(i)}]", cl
        rule = _ops.RULES.get(name)
        if rule is None:
            what = _display(n.target) if n.op == "call_function" and ns == "torch" else f".{name}()"
            if ns == "op":
                what = f"operator {name}"
            raise Refusal(f"no rule for {what} at {self.where}; no file written")
        return rule(self, a, k)

    def _emit(self, n):
        if n.op == "call_function" and n.target is operator.setitem:
            self._setitem(n)
            return
        out = self._rule(n)
        self._bind(n, out)

    def _setitem(self, n):
        """``x[idx] = v`` in torch changes ``x`` for every later use: ``x = x.at[idx].set(v)`` rebinds its name."""
        a, _ = self._args(n)
        x, idx, value = a
        if not self.is_tensor(x):
            raise Refusal(f"no rule for item assignment to a {type(x.v).__name__} at {self.where}; no file written")
        src = self.cf(x)
        held = self.holder.get(src)
        if not src.isidentifier() or held is None:
            raise Refusal(f"no rule for item assignment to this value at {self.where}; no file written")
        self.lines.append(f"{src} = {src}.at[{self.index(idx)}].set({self.lit(value)})")
        self.env[n.args[0]] = held  # later uses of the tensor read the new value
        for key in [k for k in self.cache if k[0] in (id(x), id(held))]:
            del self.cache[key]

    def _bind(self, n, out):
        if isinstance(out, Alias):
            self.env[n] = out.val
            if isinstance(out.val.expr, str):
                self.bound.setdefault(out.val.expr, set()).add(n)
            return
        if isinstance(out, list):  # a tuple of expressions (attention: output, weights)
            self.env[n] = Val(None, n.meta.get("value"))
            for u in list(n.users):
                i = u.args[1] if u.target is operator.getitem else None
                if i is None or not isinstance(i, int):
                    raise Refusal(f"no rule for this use of a layer's tuple output at {self.where}; no file written")
                expr, cl = out[i]
                if expr == "None":
                    if u.users:
                        raise Refusal(
                            f"no rule for the attention weights (need_weights) at {self.where}; no file written"
                        )
                    self.env[u] = Val("None", None)
                else:
                    self.env[u] = self.line(expr, u.meta.get("value"), cl, n.name, reuse=self._first(n))
            return
        expr, cl = out
        v = n.meta.get("value")
        ins = [x for x in self._flat(self._args(n)) if isinstance(x, Val)]
        if (
            isinstance(v, (int, float))
            and not isinstance(v, bool)
            and self.op not in SIZE_OPS
            and not any(self.is_tensor(x) for x in ins)
        ):
            self.env[n] = Val(expr, v)  # arithmetic on sizes: written inline where it is used
            return
        if (
            isinstance(v, (tuple, list))
            and n.users
            and all(u.target is operator.getitem and isinstance(u.args[1], int) for u in n.users)
        ):
            self._unpack(n, expr, v, cl)
            return
        base = self._base(n)
        self.env[n] = self.line(expr, v, cl, base, reuse=self._first(n))

    def _base(self, n) -> str:
        if self.op in SIZE_OPS:
            self.sizes += 1
            return f"n{self.sizes - 1}"
        return "h" if isinstance(n.meta.get("value"), torch.Tensor) else n.name

    def _first(self, n):
        for x in self._flat(self._args(n)):
            if self.is_tensor(x):
                return x
        return None

    def _flat(self, x):
        if isinstance(x, (tuple, list)):
            return [z for y in x for z in self._flat(y)]
        if isinstance(x, dict):
            return [z for y in x.values() for z in self._flat(y)]
        return [x]

    def _unpack(self, n, expr, v, cl):
        _chains.unpack(self, n, expr, v, cl)

    def _return(self, n):
        out_cl = []

        def render(x):
            if isinstance(x, (tuple, list)):
                body = ", ".join(render(i) for i in x)
                return f"({body}{',' if len(x) == 1 else ''})"
            if isinstance(x, dict):
                return "{" + ", ".join(f"{k!r}: {render(v)}" for k, v in x.items()) + "}"
            if self.is_tensor(x):
                want = self.cx.output_layout(self, x)
                out_cl.append(want)
                return self.cl(x) if want else self.cf(x)
            return self.lit(x) if not isinstance(x, Val) else x.expr

        a = fx.node.map_arg(n.args[0], lambda x: self.env[x])
        body = render(a)
        if isinstance(a, tuple) and body.startswith("(") and len(a) > 1:
            body = body[1:-1]
        self.out_cl = out_cl
        self.lines.append(f"return {body}")


def function_form(cx, m, value) -> str:
    """A weightless layer applied to ``x`` in torch's layout: its expression in ``x``."""
    sub = Emitter(cx, None, [], False)
    x = Val("x", value, False)
    sub.holder, sub.names = {"x": x}, {"x"}
    out = _layers.call_function_layer(sub, m, [x], {})
    return "x" if isinstance(out, Alias) else out[0]


def _display(target) -> str:
    """``torch.fft.rfft`` for the function object ``torch._C._fft.fft_rfft``."""
    import torch.nn.functional as F

    spaces = [("torch.nn.functional", F), ("torch.fft", torch.fft), ("torch.linalg", torch.linalg)]
    spaces += [("torch.special", torch.special), ("torch", torch)]
    for prefix, space in spaces:
        for name in dir(space):
            if getattr(space, name, None) is target:
                return f"{prefix}.{name}"
    return f"torch.{getattr(target, '__name__', target)}"


def _without_dead(lines: list[str]) -> list[str]:
    """The lines less assignments of a pure expression to a name no later line reads (``n0 = w.shape``, read by
    a rule that needs no value)."""
    out = list(lines)
    for i in range(len(out) - 1, -1, -1):
        m = re.match(r"^(\w+) = (.*)$", out[i])
        if (
            m
            and not re.search(r"self\.[\w.\[\]]+\(", m.group(2))
            and not any(re.search(rf"\b{m.group(1)}\b", x) for x in out[i + 1 :])
        ):
            del out[i]
    return out

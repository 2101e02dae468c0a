"""(private, imports torch) Runs and tuples in an emitted ``__call__``.

* Runs of calls through an ``nn.Sequential`` or an ``nn.ModuleList``, written as one call of the
  ``nnx.Sequential`` or a ``for`` loop over the ``nnx.List`` when no transpose is needed between their
  elements (each element is first written on its own, in a scratch emitter, to see).
* A tuple whose items are only indexed by constants, unpacked where it is made: ``q, k, v = jnp.split(...)``,
  ``_, (h_n, _) = self.rnn(x)``, named as the torch line names them.
"""

from __future__ import annotations

import operator
import re

import torch
import torch.fx as fx
from torch import nn

from diptych.port import _fx
from diptych.port._fx import source_line
from diptych.port._ops import Alias, Val


def join(a: str, b: str) -> str:
    return f"{a}.{b}" if a and b else a or b


def find(e, n) -> list | None:
    """The calls ``P.0``, ``P.1``, ... of a whole container ``P``, each taking only the previous output."""
    prefix, _, idx = n.target.rpartition(".")
    if idx != "0" or not prefix or not n.args or not isinstance(n.args[0], fx.Node) or not _constants(n):
        return None
    cont = e.m.get_submodule(prefix)
    if not isinstance(cont, (nn.Sequential, nn.ModuleList)) or len(cont) < 2:
        return None
    run, cur = [n], n
    for j in range(1, len(cont)):
        users = list(cur.users)
        if len(users) != 1:
            return None
        nxt = users[0]
        if nxt.op != "call_module" or nxt.target != f"{prefix}.{j}" or nxt.args[:1] != (cur,) or not _constants(nxt):
            return None
        run.append(nxt)
        cur = nxt
    return run


def _constants(n) -> bool:
    """Every argument after the first is a constant (a child traced with it needs no argument for it)."""
    found: list = []
    fx.node.map_arg((n.args[1:], n.kwargs), found.append)
    return not found


def scratch(e, node, value, cl: bool):
    """``node`` called on a tensor ``x`` held as ``cl`` says: (expression, layout out, needed a transpose)."""
    sub = type(e)(e.cx, e.t, [], False)
    x = Val("x", value, cl)
    sub.env, sub.holder, sub.names, sub.bound = {node.args[0]: x}, {"x": x}, {"x"}, {"x": {node.args[0]}}
    sub.node, sub.where, sub.last, sub.order = node, e.where, e.last, e.order
    out = sub._rule(node)
    if isinstance(out, Alias):
        return "x", out.val.cl, bool(sub.lines)
    if not isinstance(out, tuple) or not isinstance(out[0], str):
        return None, False, True
    return out[0], out[1], bool(sub.lines)


def emit(e, chain) -> bool:
    """Write the run ``chain`` as one line (or a loop); False when it needs transposes inside."""
    prefix = chain[0].target.rpartition(".")[0]
    cont = e.m.get_submodule(prefix)
    x = e.env[chain[0].args[0]]
    if not e.is_tensor(x):
        return False
    cl, start, exprs = x.cl, None, []
    for i, node in enumerate(chain):
        value = node.args[0].meta.get("value")
        expr, out_cl, moved = scratch(e, node, value, cl)
        if moved and i == 0:  # the run may start with one transpose
            cl = not cl
            expr, out_cl, moved = scratch(e, node, value, cl)
        if i == 0:
            start = cl
        if moved or expr is None:
            return False
        exprs.append(expr)
        cl = out_cl
    attr = e.cx.attr(e.t, prefix)
    src = e.cl(x) if start else e.cf(x)
    e.node, e.where = chain[-1], source_line(chain[-1])
    v = chain[-1].meta.get("value")
    if isinstance(cont, nn.Sequential):
        e.cx.sequential_fns(e.t, prefix, exprs)
        call = f"{attr}({src})"
        if prefix.split(".")[0] in e.optional:
            if start != cl:
                return False
            call = f"{src} if {e.cx.attr(e.t, prefix.split('.')[0])} is None else {call}"
        out = e.line(call, v, cl, prefix.split(".")[-1], reuse=x)
    else:
        if prefix.split(".")[0] in e.optional:
            return False
        body = {re.sub(r"^self\.[\w.]+\[\d+\]", "LAYER", s) for s in exprs}
        if len(body) != 1 or not next(iter(body)).startswith("LAYER(") or start != cl:
            return False
        held = e._live(x)
        if held is not None and held.expr == src and e._dead(src):
            name = src
        else:
            name = e.line(src, x.v, start, "h").expr
        loop = singular(prefix.split(".")[-1], e)
        call = next(iter(body)).replace("LAYER(x)", f"{loop}({name})")
        e.lines.append(f"for {loop} in {attr}:")
        e.lines.append(f"    {name} = {call}  # {e.comment(v, cl)}")
        out = Val(name, v, cl)
        e.holder[name] = out
    for node in chain:
        e.bound.setdefault(out.expr, set()).add(node)
    e.env[chain[-1]] = out
    return True


def singular(name: str, e) -> str:
    s = name[:-1] if name.endswith("s") and len(name) > 2 else "block"
    s = s if s.isidentifier() and s not in e.names else "block"
    return e.fresh(s)


def unpack(e, n, expr, v, cl):
    """``a, (b, _) = expr``: a tuple whose items are only indexed by constants, named by the torch line."""
    used = [u for u in n.users if u.target is operator.getitem]
    if isinstance(v, torch.Size) and len(used) == 1:  # one size: t = x.shape[1]
        u = used[0]
        tg = _fx.targets(u)
        name = tg[0] if tg and len(tg) == 1 else tg[u.args[1]] if tg and len(tg) == len(v) else None
        e.sizes += name is None
        base = name or f"n{e.sizes - 1}"
        e.env[u] = e.line(f"{e.wrap(expr)}[{u.args[1]}]", u.meta.get("value"), False, base, named=False)
        e.env[n] = Val(None, v)
        return

    def pattern(node, value, flags, base):
        users = {u.args[1]: u for u in node.users if u.target is operator.getitem}
        tgs = [_fx.targets(u) for u in users.values()]
        named = tgs[0] if tgs and all(t == tgs[0] for t in tgs) and tgs[0] and len(tgs[0]) == len(value) else None
        parts = []
        for i in range(len(value)):
            u = users.get(i % len(value)) or users.get(i - len(value))
            f = flags[i] if isinstance(flags, tuple) else False
            if u is None:
                parts.append("_")
                continue
            sub = u.meta.get("value")
            if (
                isinstance(sub, (tuple, list))
                and u.users
                and all(w.target is operator.getitem and isinstance(w.args[1], int) for w in u.users)
            ):
                e.env[u] = Val(None, sub, f)  # its items are named by the pattern
                parts.append("(" + pattern(u, sub, f, f"{base}{i}") + ")")
                continue
            own = _fx.targets(u)
            if named is not None and named[i] != "_":
                name = e._take(named[i])
            elif own and len(own) == 1:
                name = e._take(own[0])
            elif isinstance(value, torch.Size):
                name = e._size_name()
            else:
                name = e.fresh(f"{base}{i}")
            e.env[u] = Val(name, sub, f)
            e.holder[name] = e.env[u]
            e.bound.setdefault(name, set()).add(u)
            parts.append(name)
        return ", ".join(parts) + ("," if len(parts) == 1 else "")

    base = n.target.split(".")[-1] if n.op == "call_module" else n.name
    e.env[n] = Val(None, v, cl)
    e.lines.append(f"{pattern(n, v, cl, base)} = {expr}")

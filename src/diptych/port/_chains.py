"""(private, imports torch) Runs of calls through an ``nn.Sequential`` or an ``nn.ModuleList``, written as one
call of the ``nnx.Sequential`` or a ``for`` loop over the ``nnx.List`` when no transpose is needed between
their elements (each element is first written on its own, in a scratch emitter, to see)."""

from __future__ import annotations

import re

import torch.fx as fx
from torch import nn

from diptych.port._fx import source_line
from diptych.port._ops import Alias, Val


def join(a: str, b: str) -> str:
    return f"{a}.{b}" if a and b else a or b


def find(e, n) -> list | None:
    """The calls ``P.0``, ``P.1``, ... of a whole container ``P``, each taking only the previous output."""
    prefix, _, idx = n.target.rpartition(".")
    if idx != "0" or not prefix or n.kwargs or len(n.args) != 1 or not isinstance(n.args[0], fx.Node):
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
        if nxt.op != "call_module" or nxt.target != f"{prefix}.{j}" or nxt.args != (cur,) or nxt.kwargs:
            return None
        run.append(nxt)
        cur = nxt
    return run


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
        e.cx.sequential_fns(e.t, prefix, exprs, chain)
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

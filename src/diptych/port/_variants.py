"""(private, imports torch) Instances of one torch class that differ by an optional child, written as one class.

The common case: a residual block whose ``downsample`` is a module in some instances and ``None`` in the
others (``identity = x if self.downsample is None else self.downsample(x)``). When the graphs agree once
the fuller instance's call to that child is skipped, the class calls it as
``x if self.downsample is None else self.downsample(x)``. If the child is built inside the class (not
passed in), ``__init__`` builds it under the simplest condition on the constructor's arguments that holds
exactly for the instances that have it (``stride != 1 or cin != cout``).
"""

from __future__ import annotations

import re
from itertools import combinations

import torch.fx as fx

SLOT = "\x00"
WILDCARD = object()  # a slot an instance does not have (its optional child is absent)


def canon(graph: fx.Graph, drop=frozenset()):
    """The graph as comparable tuples, with the calls to ``drop`` skipped (their input passed through)."""
    index, repl, out = {}, {}, []

    def ref(a):
        while a in repl:
            a = repl[a]
        return ("node", index[a])

    for n in graph.nodes:
        if n.op == "call_module" and n.target in drop:
            if len(n.args) != 1 or n.kwargs or not isinstance(n.args[0], fx.Node):
                return None
            repl[n] = n.args[0]
            continue
        args, kwargs = fx.node.map_arg(n.args, ref), fx.node.map_arg(n.kwargs, ref)
        target = n.target if isinstance(n.target, str) else id(n.target)
        out.append((n.op, target, repr(args), repr(kwargs)))
        index[n] = len(out) - 1
    return out


def _absent(graph: fx.Graph, module) -> frozenset:
    """The calls of ``graph`` to children that are None in ``module``."""
    return frozenset(
        n.target for n in graph.nodes if n.op == "call_module" and getattr(module, n.target.split(".")[0], 0) is None
    )


def _predicates(names: list[tuple[str, object]]):
    ints = [(k, v) for k, v in names if isinstance(v, int) and not isinstance(v, bool)]
    single = [(f"{k} != 1", lambda s, k=k: s[k] != 1) for k, _ in ints]
    single += [(f"{a} != {b}", lambda s, a=a, b=b: s[a] != s[b]) for (a, _), (b, _) in combinations(ints, 2)]
    single += [(k, lambda s, k=k: bool(s[k])) for k, v in names if isinstance(v, bool)]
    yield from single
    for (t1, f1), (t2, f2) in combinations(single, 2):
        yield f"{t1} or {t2}", lambda s, f1=f1, f2=f2: f1(s) or f2(s)


def condition(scopes_with: list[dict], scopes_without: list[dict]) -> str | None:
    """The simplest test on the constructor's arguments, true for the first scopes, false for the others."""
    if not scopes_with or not scopes_without or any(not s for s in scopes_with + scopes_without):
        return None
    for text, f in _predicates(list(scopes_with[0].items())):
        try:
            if all(f(s) for s in scopes_with) and not any(f(s) for s in scopes_without):
                return text
        except (KeyError, TypeError):
            continue
    return None


def _norm(line: str) -> str:
    return re.sub(f"{SLOT}\\d+{SLOT}", SLOT, line)


def _slot_count(line: str) -> int:
    return len(re.findall(f"{SLOT}\\d+{SLOT}", line))


def unify(w, buckets: list[list[str]], init_of) -> bool:
    """Merge the instance groups ``buckets`` of one torch class into one, in place on the instances (their
    ``init``, ``call`` and ``slots`` become the fullest instance's); False when they differ otherwise."""
    called = [b for b in buckets if w.inst[b[0]].call is not None]
    if len(buckets) < 2 or not called:
        return False
    full = max(called, key=lambda b: len(list(w.traced[b[0]].graph.nodes)))
    a = w.inst[full[0]]
    ga = w.traced[full[0]].graph
    optional: set[str] = set()
    for b in buckets:
        if b is full or w.inst[b[0]].call is None:
            continue
        drop = _absent(ga, w.inst[b[0]].module)
        if not drop or canon(ga, drop) != canon(w.traced[b[0]].graph):
            return False
        optional |= {t.split(".")[0] for t in drop}
    # __init__: the lines the others lack must build an optional child
    a_lines = init_of(a)
    plans = {}
    for b in buckets:
        if b is full:
            continue
        plan = _align(a_lines, init_of(w.inst[b[0]]), w.inst[b[0]].module)
        if plan is None:
            return False
        plans[id(b)] = plan
    missing = sorted({i for p in plans.values() for i in p})
    merged = list(a.init)
    for i in missing:
        attr = a_lines[i].split("=", 1)[0].strip().removeprefix("self.")
        have = [w.inst[p].args or {} for b in buckets for p in b if i not in plans.get(id(b), ())]
        lack = [w.inst[p].args or {} for b in buckets for p in b if i in plans.get(id(b), ())]
        cond = condition(have, lack)
        if cond is None:
            return False
        merged[i] = f"{a.init[i]} if {cond} else None" if "=" in a.init[i] else a.init[i]
        optional.add(attr)
    call = w.reemit(full[0], frozenset(optional)) if optional else a.call
    for b in buckets:
        for p in b:
            inst = w.inst[p]
            miss = plans.get(id(b), [])
            inst.slots = _aligned(a.init, miss, inst.slots) if p not in full else inst.slots
            inst.init, inst.call = merged, call if inst.call is not None or p in full else None
            inst.params = a.params
    return True


def _align(a_lines: list[str], b_lines: list[str], module) -> list[int] | None:
    """Indices of ``a_lines`` that ``b_lines`` lacks (each building a child that is None in ``module``)."""
    out, j = [], 0
    for i, line in enumerate(a_lines):
        if j < len(b_lines) and _norm(b_lines[j]) == _norm(line):
            j += 1
            continue
        attr = line.split("=", 1)[0].strip().removeprefix("self.")
        if not attr.isidentifier() or getattr(module, attr, 0) is not None:
            return None
        out.append(i)
    return out if j == len(b_lines) else None


def _aligned(a_init: list[str], missing: list[int], slots: list) -> list:
    out, k = [], 0
    for i, line in enumerate(a_init):
        n = _slot_count(line)
        if i in missing:
            out += [(WILDCARD, "")] * n
        else:
            out += slots[k : k + n]
            k += n
    return out

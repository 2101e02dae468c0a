"""Where a port parts: the first mapped layer (in torch execution order) whose input or output differs
between the two recorded forward passes, or else the first failing tensor row; with a hint. Numpy only:
it reads the recorded calls, and imports no framework."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from diptych.parity import diff
from diptych.port import rules
from diptych.port.hints import hints_for

if TYPE_CHECKING:  # _convert imports both frameworks
    from diptych.port._convert import Plan

DIVERGES = 1e-5  # an activation differs when max|a - b| > 1e-5 * max(1, max|b|)


def _differs(a: np.ndarray, b: np.ndarray) -> tuple[bool, float, float]:
    d, r = diff(a, b)
    return d > DIVERGES * max(1.0, float(np.max(np.abs(b))) if b.size else 1.0), d, r


def locate(p: Plan, tm, nm, tcalls, ncalls, report, load: bool) -> dict | None:
    """The first mapped layer (in torch execution order) whose input or output differs."""
    by_tmod: dict[str, list] = {}
    for t, n, _ in p.pairs:
        by_tmod.setdefault(t.module, []).append((t, n))
    nrec = {c.name: c for c in ncalls if c.output is not None}

    def nnx_module(pairs) -> str | None:
        mods = [n.module for _, n in pairs]
        if len(mods) == 1 and mods[0] in nrec:
            return mods[0]
        parts = [m.split(".") for m in mods]  # recurrent cells run under scan: their common ancestor
        common = []
        for tok in zip(*parts, strict=False):
            if len(set(tok)) > 1:
                break
            common.append(tok[0])
        for k in range(len(common), 0, -1):
            if ".".join(common[:k]) in nrec:
                return ".".join(common[:k])
        return None

    out_by_id = {c.out_id: c for c in tcalls}
    for c in tcalls:
        if c.name not in by_tmod:
            continue
        pairs = by_tmod[c.name]
        t, n = pairs[0]
        nmod = nnx_module(pairs)
        if nmod is None:
            continue
        nc = nrec[nmod]
        base = {"layer": c.name, "torch": c.name, "nnx": nmod, "kind": t.cls}
        if c.inputs is not None and nc.inputs is not None:
            b = rules.to_torch_layout(nc.inputs, c.inputs.shape, p)
            flat = p.cfg(t, n).get("flatten")
            if flat and b is not None and b.ndim == 2:  # the twin flattens (S, C): compare in torch's (C, S)
                b = b.reshape(len(b), flat[1], flat[0]).transpose(0, 2, 1).reshape(len(b), -1)
            if b is not None and b.dtype.kind == "f" and c.inputs.dtype.kind == "f":
                bad, d, r = _differs(b, c.inputs)
                if bad:
                    src = out_by_id.get(c.in_id)
                    glue = src if src is not None and src.name not in by_tmod and src.leaf else None
                    where = (
                        f"the input of {c.name} already differs: the code between the previous layer and "
                        f"{c.name} (an activation, reshape, padding or residual) computes something else"
                    )
                    res = {**base, "where": "input", "max_abs": d, "max_rel": r, "detail": where}
                    if glue is not None:
                        mod = tm.get_submodule(glue.name)
                        res.update(
                            layer=glue.name,
                            torch=glue.name,
                            kind=type(mod).__name__,
                            detail=f"{glue.name} ({type(mod).__name__}) feeds {c.name}; its output differs "
                            f"from the NNX input of {nmod}",
                        )
                    res["hint"] = hints_for(
                        p, tm, nm, t, n, "input", glue=glue, tcall=c, ncall=nc, load=load, tcalls=tcalls
                    )
                    return res
        if c.output is not None and nc.output is not None:
            b = rules.to_torch_layout(nc.output, c.output.shape, p)
            if b is not None:
                bad, d, r = _differs(b, c.output)
                if bad:
                    return {
                        **base,
                        "where": "output",
                        "max_abs": d,
                        "max_rel": r,
                        "detail": f"{c.name}'s input agrees, its output differs",
                        "hint": hints_for(p, tm, nm, t, n, "output", tcall=c, ncall=nc, load=load),
                    }
    # no activation differs: the first failing tensor row, in layer order
    failing = [r for r in report.rows if not r.ok]
    for t, n, _ in p.pairs:
        for r in failing:
            names = [f"{n.name}.{k}" for k in n.keys] + list(t.keys.values())
            if r.tensor in names:
                return {
                    "layer": t.name,
                    "torch": t.module,
                    "nnx": n.name,
                    "kind": t.cls,
                    "where": r.check,
                    "max_abs": r.max_abs,
                    "max_rel": r.max_rel,
                    "detail": f"{r.check} {r.tensor} differs",
                    "hint": hints_for(p, tm, nm, t, n, r.check, row=r, load=load),
                }
    return None

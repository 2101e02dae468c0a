"""Match torch layers to NNX layers (neutral): by explicit mapping, then by name, then by order and shape."""

from __future__ import annotations

from diptych.errors import DiptychError
from diptych.port.rules import shapes_to_nnx
from diptych.port.units import Unit, loose

_GROUP = {"lstm": "recurrent", "gru": "recurrent", "rnn": "recurrent"}  # a torch GRU may map to any cell kind


def _compatible(t: Unit, n: Unit, cfg: dict) -> bool:
    if _GROUP.get(t.kind, t.kind) != _GROUP.get(n.kind, n.kind) or (t.kind in _GROUP and t.kind != n.kind):
        return False
    if t.kind == "param":
        return t.shapes["value"] == n.shapes["value"]
    want = shapes_to_nnx(t.kind, t.shapes, {**n.config, **cfg})
    return bool(want) and set(want) <= set(n.shapes) and all(want[k] == n.shapes[k] for k in want)


def match(
    tunits: list[Unit], nunits: list[Unit], mapping: dict | str = "auto", cfgs: dict[str, dict] | None = None
) -> list[tuple[Unit, Unit, str]]:
    """Pairs ``(torch unit, nnx unit, how)``; ``how`` is ``explicit``, ``name`` or ``order``.

    Both lists must be in corresponding order (execution order when known). Raises a
    :class:`DiptychError` listing candidates for anything ambiguous or left over.
    """
    cfgs = cfgs or {}
    if mapping == "auto" or mapping is None:
        mapping = {}
    if not isinstance(mapping, dict):
        raise DiptychError(f"mapping must be 'auto' or a dict {{torch_name: nnx_path}}, not {type(mapping).__name__}")
    tby, nby = {u.name: u for u in tunits}, {u.name: u for u in nunits}
    pairs: dict[str, tuple[Unit, Unit, str]] = {}
    used: set[str] = set()
    for tname, nname in mapping.items():
        if tname not in tby:
            raise DiptychError(
                f"mapping names torch layer {tname!r}, which the torch model does not have; "
                f"its layers: {', '.join(tby)}"
            )
        if nname not in nby:
            raise DiptychError(
                f"mapping names NNX layer {nname!r}, which the NNX model does not have; its layers: {', '.join(nby)}"
            )
        pairs[tname] = (tby[tname], nby[nname], "explicit")
        used.add(nname)
    # by name: exact, then loose (container tokens and underscores dropped), when unique and compatible
    for level in (lambda s: s, loose):
        index: dict[str, list[Unit]] = {}
        for n in nunits:
            if n.name not in used:
                index.setdefault(level(n.name), []).append(n)
        for t in tunits:
            if t.name in pairs:
                continue
            cands = [n for n in index.get(level(t.name), []) if n.name not in used]
            if len(cands) == 1 and _compatible(t, cands[0], cfgs.get(t.name, {})):
                pairs[t.name] = (t, cands[0], "name")
                used.add(cands[0].name)
    # a layer tied to an earlier one (an output head sharing the embedding) may have no NNX layer of its own
    tunits = [t for t in tunits if t.name in pairs or not t.config.get("tied")]
    # by order within each kind group, every pair checked for shape
    left_t = [t for t in tunits if t.name not in pairs]
    left_n = [n for n in nunits if n.name not in used]
    for group in dict.fromkeys(_GROUP.get(u.kind, u.kind) for u in left_t + left_n):
        ts = [t for t in left_t if _GROUP.get(t.kind, t.kind) == group]
        ns = [n for n in left_n if _GROUP.get(n.kind, n.kind) == group]
        for i, t in enumerate(ts):
            n = ns[i] if i < len(ns) else None
            if n is not None and len(ts) == len(ns) and _compatible(t, n, cfgs.get(t.name, {})):
                pairs[t.name] = (t, n, "order")
                used.add(n.name)
                continue
            cands = [c for c in ns if c.name not in used and _compatible(t, c, cfgs.get(t.name, {}))]
            listed = "; ".join(c.describe() for c in cands) or "none with a matching type and shape"
            raise DiptychError(
                f"cannot map torch layer {t.describe()}: NNX candidates: {listed}; pass an explicit "
                f"mapping, e.g. mapping={{{t.name!r}: {cands[0].name if cands else 'NNX_PATH'!r}}}"
            )
        extra = [n for n in ns if n.name not in used]
        if extra:
            same = ", ".join(t.name for t in tunits if _GROUP.get(t.kind, t.kind) == group) or "none"
            raise DiptychError(
                f"NNX layer {extra[0].describe()} has no torch counterpart (torch {group} layers: "
                f"{same}); "
                f"check the two models have the same layers, or pass an explicit mapping"
            )
    return [pairs[t.name] for t in tunits]

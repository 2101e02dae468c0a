"""Weight conversion between a torch model and an NNX model (imports both frameworks)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from diptych.errors import DiptychError
from diptych.port import _nnx, _torch, rules
from diptych.port.guard import user_code
from diptych.port.mapping import match
from diptych.port.units import Unit

SPATIAL = ("conv", "conv_transpose")


@dataclass
class Plan:
    """Which torch layer goes to which NNX layer, and with which rule settings."""

    pairs: list[tuple[Unit, Unit, str]]
    cfgs: dict[str, dict] = field(default_factory=dict)  # torch unit name -> rule config
    spatial: int = 0  # image models: spatial dims of the first conv
    channels_last: bool = False  # the NNX twin takes (B, *S, C)

    @property
    def mapping(self) -> dict[str, str]:
        return {t.name: n.name for t, n, _ in self.pairs}

    def cfg(self, t: Unit, n: Unit) -> dict:
        return {**t.config, **n.config, **self.cfgs.get(t.name, {})}


def is_torch_module(x) -> bool:
    import sys

    return "torch" in sys.modules and isinstance(x, sys.modules["torch"].nn.Module)


def is_nnx_module(x) -> bool:
    import sys

    return "flax.nnx" in sys.modules and isinstance(x, sys.modules["flax.nnx"].Module)


def to_nnx_layout(arrays: list[np.ndarray], plan: Plan) -> list[np.ndarray]:
    """Torch-layout inputs -> the NNX twin's: (B, C, *S) -> (B, *S, C) for image models."""
    if not plan.channels_last:
        return list(arrays)
    return [np.moveaxis(a, 1, -1) if a.ndim == plan.spatial + 2 and a.dtype.kind == "f" else a for a in arrays]


def _order(units: list[Unit], calls: list) -> list[Unit]:
    first = {}
    for i, c in enumerate(calls):
        first.setdefault(c.name, i)

    def when(u: Unit) -> int:
        if u.module in first:
            return first[u.module]
        # a cell inside nnx.RNN runs under scan: use its nearest recorded ancestor
        parts = u.module.split(".")
        for k in range(len(parts) - 1, 0, -1):
            anc = ".".join(parts[:k])
            if anc in first:
                return first[anc]
        return len(calls)

    return sorted(units, key=when)  # stable: ties keep registration / natural order


def plan(
    tm, nm, mapping="auto", inputs: list[np.ndarray] | None = None, flatten: str = "auto", jax_layout: str = "auto"
) -> Plan:
    """Match the layers of torch model ``tm`` and NNX model ``nm`` (see :func:`diptych.port.convert`)."""
    tunits, nunits = _torch.units(tm), _nnx.units(nm)
    first_conv = next((u for u in tunits if u.kind in SPATIAL), None)
    spatial = len(first_conv.shapes["weight"]) - 2 if first_conv else 0
    if jax_layout not in ("auto", "channels-last", "same"):
        raise DiptychError(f"jax_layout must be auto, channels-last or same, not {jax_layout!r}")
    channels_last = spatial > 0 and jax_layout != "same"
    p = Plan([], {}, spatial, channels_last)
    tcalls = []
    if inputs is not None:
        was = tm.training
        tm.eval()
        try:  # the first run of each model on the inputs: its exception is one line (guard.py)
            with user_code("the torch model", inputs):
                tcalls, _ = _torch_trace(tm, inputs)
            nin = to_nnx_layout(inputs, p)
            with user_code("the NNX model", nin):
                ncalls, _ = _nnx_trace(nm, nin)
        finally:
            tm.train(was)
        tunits, nunits = _order(tunits, tcalls), _order(nunits, ncalls)
    if flatten not in ("auto", "channels-last", "same"):
        raise DiptychError(f"flatten must be auto, channels-last or same, not {flatten!r}")
    if flatten != "same" and (flatten == "channels-last" or any(u.kind in SPATIAL for u in nunits)):
        p.cfgs.update(_flatten_cfgs(tunits, tcalls))
    p.pairs = match(tunits, nunits, mapping, p.cfgs)
    return p


def _torch_trace(tm, inputs):
    import torch

    from diptych.port._trace import torch_calls

    return torch_calls(tm, [torch.from_numpy(np.ascontiguousarray(a)) for a in inputs])


def _nnx_trace(nm, inputs):
    import jax.numpy as jnp
    from flax import nnx

    from diptych.port._trace import nnx_calls

    clone = nnx.clone(nm)  # a train-mode BatchNorm would update its statistics
    clone.eval()
    held = {}

    def run(model, *xs):
        held["calls"], out = nnx_calls(model, list(xs))
        return out

    # only the order of the calls is needed: trace shapes, compute nothing
    out = nnx.eval_shape(run, clone, *[jnp.asarray(a) for a in inputs])
    return held["calls"], out


def _flatten_cfgs(tunits: list[Unit], tcalls: list) -> dict[str, dict]:
    """The Linear that reads a flattened conv map: torch flattens (C, *S), a channels-last twin (*S, C)."""
    cfgs = {}
    if tcalls:  # from the recorded shapes: the last map of C * S == in_features before the Linear
        maps = []
        by_name = {u.module: u for u in tunits}
        for c in tcalls:
            u = by_name.get(c.name)
            if u is not None and u.kind == "linear" and c.inputs is not None and c.inputs.ndim == 2:
                fin = u.shapes["weight"][1]
                src = next((s for s in reversed(maps) if int(np.prod(s)) == fin), None)
                if src is not None and int(np.prod(src[1:])) > 1:
                    cfgs[u.name] = {"flatten": (src[0], int(np.prod(src[1:])))}
            if c.output is not None and c.output.ndim >= 3 and c.inputs is not None and c.inputs.ndim >= 3:
                maps.append(c.output.shape[1:])
        return cfgs
    prev = None  # no inputs: the first Linear after a conv stack, in registration order
    for u in tunits:
        if u.kind in SPATIAL + ("batchnorm", "groupnorm"):
            prev = u.shapes.get("weight", u.shapes.get("running_mean"))
            prev = prev[0] if u.kind != "conv_transpose" else prev[1]
        elif u.kind == "linear" and prev:
            fin = u.shapes["weight"][1]
            if fin % prev == 0 and fin // prev > 1:
                cfgs[u.name] = {"flatten": (prev, fin // prev)}
            prev = None
        elif u.kind != "param":
            prev = None
    return cfgs


def transfer(p: Plan, tm, nm, to: str) -> None:
    """Copy every mapped layer's weights (and running statistics) torch -> NNX (``to="nnx"``) or back."""
    nvars = _nnx.all_variables(nm)  # one walk of the graph, not one per layer
    for t, n, _ in p.pairs:
        cfg = p.cfg(t, n)
        if to == "nnx":
            vals = rules.to_nnx(t.kind, _torch.get(tm, t), cfg)
            want = n.shapes
        else:
            vals = rules.to_torch(t.kind, _nnx.get(nm, n, nvars), cfg)
            want = t.shapes
        vals = {k: v for k, v in vals.items() if k in want}
        bad = [k for k in vals if tuple(vals[k].shape) != tuple(want[k])]
        if bad:
            k = bad[0]
            raise DiptychError(
                f"torch layer {t.name!r} -> NNX {n.name!r}: {k} converts to shape "
                f"{tuple(vals[k].shape)} but the target has {tuple(want[k])}; pass an explicit mapping "
                f"or check the layer's configuration"
            )
        (_nnx.put(nm, n, vals, nvars) if to == "nnx" else _torch.put(tm, t, vals))


def convert(
    src, dst, mapping="auto", *, inputs=None, flatten="auto", jax_layout="auto", torch_model=None, nnx_model=None
) -> dict[str, str]:
    """See :func:`diptych.port.convert`."""
    if isinstance(src, dict) and not is_torch_module(src):
        if torch_model is None:
            raise DiptychError(
                "a state_dict alone does not say each layer's type: pass torch_model=YourModel() "
                "(its weights are replaced by the state_dict)"
            )
        import torch

        torch_model.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in src.items()})
        src = torch_model
    if not is_torch_module(src) and not is_nnx_module(src):  # an nnx.State
        if nnx_model is None:
            raise DiptychError("an nnx.State alone does not say each layer's type: pass nnx_model=YourModel(rngs)")
        from flax import nnx

        nnx.update(nnx_model, src)
        src = nnx_model
    if is_torch_module(src) and is_nnx_module(dst):
        tm, nm, to = src, dst, "nnx"
    elif is_nnx_module(src) and is_torch_module(dst):
        tm, nm, to = dst, src, "torch"
    else:
        raise DiptychError(
            f"convert needs a torch model and an NNX model (one each way), got "
            f"{type(src).__name__} and {type(dst).__name__}"
        )
    inputs = None if inputs is None else [np.asarray(a) for a in inputs]
    p = plan(tm, nm, mapping, inputs, flatten, jax_layout)
    transfer(p, tm, nm, to)
    return p.mapping

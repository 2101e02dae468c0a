"""Record every module call of a forward pass, in order: torch forward hooks; in NNX, each module
class's ``__call__`` wrapped for the duration of one eager call (values under ``jax.jit``/``scan``
are tracers and are recorded by name only)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Call:
    name: str
    inputs: np.ndarray | None  # the first array argument
    output: np.ndarray | None  # the first array leaf of the result
    in_id: int = 0  # torch: id() of the input tensor, to see which module produced it
    out_id: int = 0
    leaf: bool = True  # the module has no child modules
    alt: dict = field(default_factory=dict)  # attention: its output under a known porting mistake (hints.py)


def _first_tensor(x, kind):
    if isinstance(x, kind):
        return x
    if isinstance(x, (tuple, list)):
        for v in x:
            t = _first_tensor(v, kind)
            if t is not None:
                return t
    if isinstance(x, dict):
        for v in x.values():
            t = _first_tensor(v, kind)
            if t is not None:
                return t
    return None


def torch_calls(model, inputs: list, grad: bool = False) -> tuple[list[Call], object]:
    """Run ``model(*inputs)`` once with hooks on every module; return (calls, output)."""
    import torch

    calls: list[Call] = []
    seen: set[str] = set()

    def hook(name, leaf):
        def f(module, args, kwargs, out):
            if name in seen:
                return
            seen.add(name)
            a, o = _first_tensor(args, torch.Tensor), _first_tensor(out, torch.Tensor)
            calls.append(
                Call(
                    name,
                    None if a is None else a.detach().cpu().numpy().copy(),
                    None if o is None else o.detach().cpu().numpy().copy(),
                    id(a),
                    id(o),
                    leaf,
                    _attention_mistakes(module, args, kwargs),
                )
            )

        return f

    handles = [
        m.register_forward_hook(hook(n, not any(True for _ in m.children())), with_kwargs=True)
        for n, m in model.named_modules()
        if n
    ]
    try:
        with torch.set_grad_enabled(grad):
            out = model(*inputs)
    finally:
        for h in handles:
            h.remove()
    return calls, out


def _attention_mistakes(module, args, kwargs) -> dict:
    """For an ``nn.MultiheadAttention`` call: its output had the twin made a classic mistake, to name it if the
    twin's output is one of them. ``masks``: boolean masks read the other way round (torch's True blocks,
    JAX's and NNX's True attends); ``batch_first``: the time-major input read as batch-major."""
    import torch

    if not isinstance(module, torch.nn.MultiheadAttention) or module.training and module.dropout:
        return {}
    names = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask")
    call = {**dict(zip(names, args)), **kwargs}
    out = {}
    with torch.no_grad():
        flipped = {k: ~call[k] for k in ("attn_mask", "key_padding_mask") if _is_bool(call.get(k))}
        if flipped:
            y = module(**{**call, **flipped})[0]
            out["masks"] = y.detach().cpu().numpy().copy()
        if not module.batch_first:
            module.batch_first = True
            try:
                y = module(**call)[0]
                out["batch_first"] = y.detach().cpu().numpy().copy()
            except (RuntimeError, ValueError, AssertionError):
                pass
            finally:
                module.batch_first = False
    return out


def _is_bool(x) -> bool:
    import torch

    return isinstance(x, torch.Tensor) and x.dtype == torch.bool


def nnx_calls(model, inputs: list, keep=None) -> tuple[list[Call], object]:
    """Run ``model(*inputs)``, recording each submodule call (path, first input, first output).

    Eagerly, values are numpy copies. Under ``jax.jit`` pass ``keep(array) -> bool``: the arrays it
    accepts (the jit trace's own, not a ``scan`` body's) are kept as they are, to be returned.
    """
    import jax
    from flax import nnx

    paths = {id(m): ".".join(str(p) for p in path) for path, m in nnx.iter_modules(model) if path}
    classes = {type(m) for _, m in nnx.iter_modules(model)}
    calls: list[Call] = []
    active: set[int] = set()
    saved = {}

    def concrete(x):
        t = _first_tensor(x, jax.Array)
        if t is None:
            return None
        if keep is not None:
            return t if keep(t) else None
        return None if isinstance(t, jax.core.Tracer) else np.asarray(t).copy()

    def wrap(orig):
        def __call__(self, *args, **kw):
            key = id(self)
            if key in active or key not in paths:
                return orig(self, *args, **kw)
            active.add(key)
            try:
                out = orig(self, *args, **kw)
            finally:
                active.discard(key)
            if paths[key] not in {c.name for c in calls}:
                calls.append(Call(paths[key], concrete(args), concrete(out)))
            return out

        return __call__

    for cls in classes:
        saved[cls] = cls.__dict__.get("__call__")
        cls.__call__ = wrap(cls.__call__)
    try:
        out = model(*inputs)
    finally:
        for cls, orig in saved.items():
            if orig is None:
                del cls.__call__
            else:
                cls.__call__ = orig
    return calls, out

"""(private, imports torch) The NNX classes of a translation: each traced instance's ``__init__`` and
``__call__``, gathered into one class per torch class.

``__init__`` builds every child at the torch attribute path (``nn.Sequential`` -> ``nnx.Sequential``,
``nn.ModuleList`` -> ``nnx.List``, ``nn.ModuleDict`` -> ``nnx.Dict``, a layer -> its NNX layer, another
user class -> its NNX class), so ``diptych.port.convert`` pairs the weights by name. Hyperparameters
are written as slots (:mod:`._hparams` names them); child classes as tokens until every instance is seen.
"""

from __future__ import annotations

import dataclasses
import inspect

import torch
from torch import nn

from diptych.port import _layers, _ops
from diptych.port._emit import Emitter, Val, function_form
from diptych.port._fx import Refusal, constructor_args, init_defaults, is_user

_NONE = object()
SLOT = "\x00"
CLASS = "\x01"
LIST, ITEM, END = "\x02", "\x03", "\x04"
OPT_END, KW = (
    "\x06",
    "\x07",
)  # a keyword argument left out where it has its default  # a ModuleList's items: one comprehension if they read alike


def keepable(v) -> bool:
    """A constructor argument the NNX class takes too: a number, a string, None, a module, a dataclass."""
    if v is None or isinstance(v, (bool, int, float, str, nn.Module)):
        return True
    if isinstance(v, (tuple, list)):
        return all(keepable(x) and not isinstance(x, nn.Module) for x in v)
    return dataclasses.is_dataclass(v) and not isinstance(v, type)


@dataclasses.dataclass
class Instance:
    path: str
    module: nn.Module
    args: dict | None  # constructor arguments kept by the NNX class (None: not recorded)
    init: list[str] = dataclasses.field(default_factory=list)
    call: list[str] | None = None
    params: list[str] = dataclasses.field(default_factory=list)
    slots: list[tuple] = dataclasses.field(default_factory=list)  # (value, hint) in order of appearance
    in_cl: list = dataclasses.field(default_factory=list)
    out_cl: object = False


class Writer:
    """Translates the traced instances of one model; see the module docstring."""

    def __init__(self, model: nn.Module, traced: list, calls: dict, jax_layout: bool, spatial: int):
        self.model, self.calls, self.jax_layout, self.spatial = model, calls, jax_layout, spatial
        self.traced = {t.path: t for t in traced}
        self.paths = {m: p for p, m in model.named_modules(remove_duplicate=False)}
        self.inst: dict[str, Instance] = {}
        self.layouts: dict[type, tuple] = {}
        self.seq_fns: dict[str, dict[int, str]] = {}
        self.fn_inputs: dict[str, object] = {}  # a weightless layer's input on the example (for its function)
        self.slots: list[tuple] = []
        self.dataclasses: dict[str, type] = {}
        self.start = 0  # the first slot of the instance being written (slots are numbered from it)
        self._tied = self._find_tied()

    # --- answers to the emitter ----------------------------------------------------------------------

    def _find_tied(self) -> dict[int, nn.Module]:
        emb = {id(m.weight): m for m in self.model.modules() if isinstance(m, nn.Embedding)}
        lins = [m for m in self.model.modules() if isinstance(m, nn.Linear)]
        return {id(m): emb[id(m.weight)] for m in lins if id(m.weight) in emb}

    def tied(self, t, target: str) -> str | None:
        lin = t.module.get_submodule(target)
        e = self._tied.get(id(lin))
        if e is None:
            return None
        if lin.bias is not None:
            raise Refusal("no rule for a Linear with a bias whose weight is an Embedding's (tied); no file written")
        inside = {m: p for p, m in t.module.named_modules()}
        if e not in inside:
            raise Refusal(
                f"no rule for {target!r}, tied to an embedding outside {type(t.module).__name__}; no file written"
            )
        return self.attr(t, inside[e])

    def attr(self, t, target: str) -> str:
        """``self.layer1.layers[0].conv1`` for torch's ``layer1.0.conv1`` inside the instance ``t``."""
        out, m = "self", t.module
        for part in target.split(".") if target else []:
            if isinstance(m, nn.Sequential):
                out += f".layers[{part}]"
            elif isinstance(m, nn.ModuleList):
                out += f"[{part}]"
            elif isinstance(m, nn.ModuleDict) and not part.isidentifier():
                out += f"[{part!r}]"
            elif _layers.layer_rule(m) is not None:  # a layer's own parameter read directly
                return out + _param_name(m, part)
            else:
                out += f".{part}"
            m = getattr(m, part) if not isinstance(m, (nn.Sequential, nn.ModuleList)) else m[int(part)]
        return out

    def output_layout(self, e: Emitter, x: Val) -> bool:
        if not e.top:
            return bool(x.cl) and e.rank(x) >= 3
        return self.jax_layout and self.spatial > 0 and e.rank(x) == self.spatial + 2

    def sequential_fns(self, t, prefix: str, exprs: list[str]) -> None:
        """The weightless elements of a Sequential called as one run: the functions its run used."""
        path = _join(t.path, prefix)
        cont = t.module.get_submodule(prefix)
        fns = {}
        for i, (child, expr) in enumerate(zip(cont, exprs)):
            if _layers.function_rule(child) is not None:
                fns[i] = _as_function(expr)
        self.seq_fns[path] = fns

    def call_child(self, e: Emitter, node, m: nn.Module, a, k):
        path = _join(e.t.path, node.target)
        traced = self.traced[path]
        sig = inspect.signature(m.forward)
        bound = sig.bind(*a, **k).arguments
        names = [n.target for n in traced.graph.nodes if n.op == "placeholder"]
        vals = [bound[n] for n in names]
        established = self.layouts.get(type(m))
        in_cl = established[0] if established else [bool(v.cl) and e.rank(v) >= 3 for v in vals]
        inst = self.emit(path, in_cl)
        if not established:
            self.layouts[type(m)] = (in_cl, inst.out_cl)
        args = [e.cl(v) if c else e.cf(v) for v, c in zip(vals, in_cl)]
        positional = [n for n in sig.parameters][: len(names)] == names
        text = ", ".join(args if positional else [f"{n}={x}" for n, x in zip(names, args)])
        return f"{self.attr(e.t, node.target)}({text})", inst.out_cl

    # --- instances -----------------------------------------------------------------------------------

    def emit(self, path: str, in_cl: list) -> Instance:
        """Write (once) the instance at ``path``: its ``__call__`` if it was called, and its ``__init__``."""
        if path in self.inst:
            return self.inst[path]
        m = self.model.get_submodule(path) if path else self.model
        args = constructor_args(m, self.calls)
        if args is not None:
            args = {k: v for k, v in args.items() if keepable(v)}
        inst = Instance(path, m, args)
        self.inst[path] = inst
        if path in self.traced:
            e = Emitter(self, self.traced[path], in_cl, top=path == "")
            inst.call = e.run()
            inst.params, inst.in_cl = e.params, in_cl
            inst.out_cl = _structure(e)
        return inst

    def reemit(self, path: str, optional: frozenset) -> list[str]:
        """The instance's ``__call__`` again, calling the children ``optional`` only when they are not None."""
        inst = self.inst[path]
        e = Emitter(self, self.traced[path], inst.in_cl, top=path == "", optional=optional)
        inst.call = e.run()
        if _structure(e) != inst.out_cl:
            raise Refusal(f"no rule for an optional child of {type(inst.module).__name__} that moves the layout")
        return inst.call

    def emit_inits(self) -> None:
        """Every user-class instance's ``__init__`` (after the calls: Sequential runs decide their elements)."""
        for path, m in [("", self.model), *self.model.named_modules()]:
            if path and not is_user(m):
                continue
            inst = self.emit(path, []) if path not in self.inst else self.inst[path]
            self.start = len(self.slots)
            inst.init = self._init_lines(inst)
            inst.slots = self.slots[self.start :]

    def _slot(self, value, hint, default=_NONE) -> str:
        """A hyperparameter's place in the text (``default``: what an optional keyword says when left out)."""
        self.slots.append((value, hint if default is _NONE else (hint, default)))
        return f"{SLOT}{len(self.slots) - 1 - self.start}{SLOT}"

    def _init_lines(self, inst: Instance) -> list[str]:
        m, lines = inst.module, []
        arg_of = {id(v): k for k, v in (inst.args or {}).items() if isinstance(v, nn.Module)}
        nones = {k for k, v in (inst.args or {}).items() if v is None}
        used = _used_targets(self.traced.get(inst.path))
        for name, child in m.named_children():
            if id(child) in arg_of:
                lines.append(f"self.{name} = {arg_of[id(child)]}")
            elif id(child) in self._tied:
                continue  # its weight is the embedding's: called as embedding.attend(x)
            elif _layers.function_rule(child) is not None:
                continue  # written inline where it is called
            else:
                lines.append(f"self.{name} = {self.construct(child, _join(inst.path, name))}")
        for name in sorted(nones):
            if getattr(m, name, 0) is None and name not in dict(m.named_children()):
                lines.append(f"self.{name} = {name}")
        for name, p in m.named_parameters(recurse=False):
            lines.append(f"self.{name} = nnx.Param({self._param_init(p)})")
        for name, _ in m.named_buffers(recurse=False):
            if name in used:
                raise Refusal(
                    f"no rule for the buffer {type(m).__name__}.{name} read by forward (make it a "
                    f"parameter, or compute it in forward); no file written"
                )
        return lines

    def _param_init(self, p: torch.Tensor) -> str:
        shape = "(" + ", ".join(self._slot(int(n), "") for n in p.shape) + ("," if p.dim() == 1 else "") + ")"
        if not torch.any(p):
            return f"jnp.zeros({shape})"
        if torch.all(p == 1):
            return f"jnp.ones({shape})"
        std = float(p.detach().float().std()) if p.numel() > 1 else 1.0
        return f"jax.random.normal(rngs.params(), {shape}) * {std:.1g}"

    def _function(self, m: nn.Module, path: str) -> str:
        """A weightless layer as a function of a torch-layout input (an element of an unrolled Sequential)."""
        value = self.fn_inputs.get(path)
        if value is None:
            return "lambda x: x"
        return _as_function(function_form(self, m, value))

    def construct(self, m: nn.Module, path: str) -> str:
        if is_user(m):
            args = constructor_args(m, self.calls)
            parts, keyword = [], False
            defaults = init_defaults(type(m))
            for k, v in {k: v for k, v in (args or {}).items() if keepable(v)}.items():
                d = defaults.get(k, inspect.Parameter.empty)
                if isinstance(v, nn.Module):
                    sub = next((p for p, c in m.named_children() if c is v), None)
                    if sub is None:
                        raise Refusal(f"no rule for a module argument {k!r} that is not a child; no file written")
                    text = self.construct(v, _join(path, sub))
                else:
                    text = self._slot(v, k, d if d is not inspect.Parameter.empty else _NONE)
                lit = "None" if d is None else _ops.literal(d) if d is not inspect.Parameter.empty else None
                if lit is not None:  # left out where the value is the default
                    keyword = True
                    parts.append(f"{KW}{lit}{OPT_END}{k}={text}, {KW}")
                else:
                    parts.append(f"{k}={text}, " if keyword else f"{text}, ")
            return f"{CLASS}{path}{CLASS}({''.join(parts)}rngs=rngs)"
        if isinstance(m, nn.Sequential):
            fns = self.seq_fns.get(path, {})
            items = []
            for i, c in enumerate(m):
                if _layers.function_rule(c) is not None:
                    items.append(fns.get(i) or self._function(c, f"{path}.{i}"))
                else:
                    items.append(self.construct(c, f"{path}.{i}"))
            return f"nnx.Sequential({', '.join(items)})"
        if isinstance(m, nn.ModuleList):
            count = self._slot(len(m), "num_layers")
            items = [self.construct(c, f"{path}.{i}") for i, c in enumerate(m)]
            return f"nnx.List({LIST}{count}{ITEM}{ITEM.join(items)}{END})"
        if isinstance(m, nn.ModuleDict):
            items = [(k, self.construct(c, f"{path}.{k}")) for k, c in m.items()]
            if all(k.isidentifier() for k, _ in items):
                return f"nnx.Dict({', '.join(f'{k}={v}' for k, v in items)})"
            return "nnx.Dict({" + ", ".join(f"{k!r}: {v}" for k, v in items) + "})"
        rule = _layers.layer_rule(m)
        if rule is not None:
            return rule.build(m, self._slot)
        if _layers.function_rule(m) is not None:
            return self._function(m, path)
        raise Refusal(f"no rule for nn.{type(m).__name__} (at {path or 'the model'}); no file written")


def _join(a: str, b: str) -> str:
    return f"{a}.{b}" if a and b else a or b


def _param_name(m: nn.Module, part: str) -> str:
    if isinstance(m, nn.Embedding) and part == "weight":
        return ".embedding[...]"
    if isinstance(m, (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)):
        return {"weight": ".scale[...]", "bias": ".bias[...]"}[part]
    if isinstance(m, nn.Linear):
        return {"weight": ".kernel[...].T", "bias": ".bias[...]"}[part]
    raise Refusal(f"no rule for reading {type(m).__name__}.{part} directly; no file written")


def _used_targets(t) -> set[str]:
    return set() if t is None else {n.target for n in t.graph.nodes if n.op == "get_attr"}


def _as_function(expr: str) -> str:
    """``jax.nn.relu(x)`` -> ``jax.nn.relu``; anything else -> ``lambda x: ...``."""
    if expr.endswith("(x)") and expr[:-3].replace(".", "").replace("_", "").isalnum():
        return expr[:-3]
    return f"lambda x: {expr}"


def _structure(e: Emitter):
    """The layout flags of an instance's output, shaped like its output (one flag per tensor)."""
    flags = iter(e.out_cl)
    out = None
    for n in e.nodes:
        if n.op == "output":
            out = n.args[0]

    def walk(x):
        if isinstance(x, (tuple, list)):
            return tuple(walk(i) for i in x)
        v = x.meta.get("value") if hasattr(x, "meta") else None
        return next(flags, False) if isinstance(v, torch.Tensor) else False

    return walk(out)

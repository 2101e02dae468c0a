"""(private, imports torch) A torch model traced for translation: one ``torch.fx`` graph per instance of a
user class, keeping the module hierarchy, each node holding the value it computed on the example inputs.

The tracer is ``torch.fx``'s symbolic tracer with a concrete shadow: every proxy also carries the value
its operation gives on the example inputs. Where fx alone stops (``B, T, C = x.size()`` used in
arithmetic, ``assert T <= block_size``, ``isinstance(h_n, tuple)`` on a recurrent layer's output,
``if x.dim() == 3``), the shadow decides, as ``torch.export`` would with static shapes: a branch on a
*size* follows the example's sizes. A branch on a tensor's *values* is refused by name.

Layers with a translation rule, and every user class other than the one being traced, are leaves
(``call_module`` nodes); containers (``nn.Sequential``, ``nn.ModuleList``, ``nn.ModuleDict``) are traced
through, so their children appear by path (``layer1.0``). Each user-class instance that is called is then
traced on its own, with the values it received.
"""

from __future__ import annotations

import contextlib
import inspect
import linecache
import operator
import os
import re
import sys
from dataclasses import dataclass, field

import torch
import torch.fx as fx
from torch import nn
from torch.fx._symbolic_trace import _maybe_revert_all_patches

from diptych.errors import DiptychError

CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


class Refusal(DiptychError):
    """An operation the translator has no rule for: one line, and no file is written."""


def is_user(m: nn.Module) -> bool:
    """A module whose class is the user's (or any non-``torch.nn`` class): translated to its own NNX class."""
    return not type(m).__module__.startswith("torch.") and not isinstance(m, CONTAINERS)


def _value(x):
    return fx.node.map_aggregate(x, lambda a: a._value if isinstance(a, fx.Proxy) else a)


class _Attr(fx.proxy.Attribute):
    _value = None

    def __init__(self, root, attr):
        super().__init__(root, attr)
        self._value = getattr(root._value, attr)


class _Proxy(fx.Proxy):
    """A proxy that also holds its value on the example inputs."""

    _value = None

    def __getattr__(self, k):
        if k.startswith("__"):
            raise AttributeError(k)
        return _Attr(self, k)

    def __len__(self):
        return len(self._value)

    def __setitem__(self, idx, value):  # x[:, 0] = 0: recorded (and done on the value), written as x.at[...].set
        self.tracer.create_proxy("call_function", operator.setitem, (self, idx, value), {})

    def __index__(self):
        return operator.index(self._value)

    def __int__(self):
        return int(self._value)

    def __float__(self):
        return float(self._value)

    @property
    def __class__(self):  # isinstance(h_n, tuple) on a layer's tuple output answers as eager torch does
        v = self.__dict__.get("_value")
        if isinstance(v, (tuple, list)) and not sys._getframe(1).f_globals.get("__name__", "").startswith("torch"):
            return type(v)
        return _Proxy


TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
PORT_DIR = os.path.dirname(__file__) + os.sep


def _caller() -> tuple[str, str] | None:
    """``(file.py:LINE, code)`` of the innermost frame outside torch and diptych's port, within the forward
    being traced: the user's line."""
    f = sys._getframe(2)
    while f is not None:
        name = f.f_code.co_filename
        if name.startswith(TORCH_DIR) and f.f_code.co_name == "trace" and "_symbolic_trace" in name:
            return None  # out of the forward pass
        if not name.startswith((TORCH_DIR, PORT_DIR)) and not name.startswith("<"):
            code = linecache.getline(name, f.f_lineno).strip()
            return f"{name.rsplit(os.sep, 1)[-1]}:{f.f_lineno}", code
        f = f.f_back
    return None


def source(node: fx.Node | None) -> tuple[str, str] | None:
    """``(file.py:LINE, code)`` of the user's line that made ``node``, or None."""
    return None if node is None else node.meta.get("source")


def source_line(node: fx.Node | None) -> str:
    """``file.py:LINE: code`` of the user's line that made ``node``."""
    found = source(node)
    return f"{found[0]}: {found[1]}" if found else "(source line unknown)"


ASSIGN = re.compile(r"^([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s*,?\s*(?:=|\+=|-=|\*=)(?!=)")


def targets(node: fx.Node) -> list[str] | None:
    """The names the user's line assigns (``out = ...``: ["out"]; ``q, k, v = ...``), when ``node`` is the last
    value that line computes (none of its users comes from the same line)."""
    found = source(node)
    if found is None or any(source(u) == found for u in node.users):
        return None
    m = ASSIGN.match(found[1])
    return [t.strip() for t in m.group(1).split(",")] if m else None


class _Tracer(fx.Tracer):
    def __init__(self, root: nn.Module, values: dict):
        super().__init__(autowrap_modules=(__import__("math"),))
        self.root_, self.values = root, values
        self.calls: list[tuple[str, list, dict]] = []
        self.consts: dict = {}  # user-class children called: (path, args, kwargs)

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if m is self.root_ or isinstance(m, CONTAINERS):
            return False
        return True  # a layer (with or without a rule: refused when emitted) or another user class

    def proxy(self, node):
        return _Proxy(node, self)

    def create_proxy(self, kind, target, args, kwargs, name=None, type_expr=None, proxy_factory_fn=None):
        p = super().create_proxy(kind, target, args, kwargs, name, type_expr, proxy_factory_fn)
        p.node.meta["source"] = _caller()
        a, k = _value(args), _value(kwargs)
        with _maybe_revert_all_patches():  # the real modules and functions, not fx's wrappers
            p._value = self._compute(kind, target, a, k, p.node)
        p.node.meta["value"] = p._value
        return p

    def _compute(self, kind, target, a, k, node):
        if kind == "placeholder":  # a constant argument (concrete_args): its value, which fx's guard checks
            if target in self.values:
                return self.values[target]
            return self.consts.get(re.sub(r"_\d+$", "", target))
        if kind == "get_attr":
            obj = self.root_
            for part in target.split("."):
                obj = getattr(obj, part)
            return obj
        if kind == "call_module":
            m = self.root_.get_submodule(target)
            if is_user(m):
                self.calls.append((target, a, k))
            return m(*a, **k)
        if kind == "call_method":
            return getattr(a[0], target)(*a[1:], **k)
        if kind == "call_function":
            out = target(*a, **k)
            return a[0] if target is operator.setitem else out
        return None

    def to_bool(self, obj) -> bool:
        v = obj._value
        if isinstance(v, torch.Tensor):
            raise Refusal(
                f"no rule for control flow on a tensor's values (bool of a tensor) at "
                f"{source_line(obj.node)}; no file written"
            )
        return bool(v)

    def iter(self, obj):
        return iter([obj[i] for i in range(len(obj._value))])


@dataclass
class Traced:
    """One traced instance: its path in the model (``""``: the model), the module and its graph."""

    path: str
    module: nn.Module
    graph: fx.Graph
    consts: dict = field(default_factory=dict)  # forward arguments fixed at their call-site values


def _bind(m: nn.Module, args: list, kwargs: dict) -> tuple[dict, dict]:
    """Forward's arguments split into tensors (placeholders) and constants (traced as given)."""
    sig = inspect.signature(m.forward)
    bound = sig.bind(*args, **kwargs)
    bound.apply_defaults()
    tensors, consts = {}, {}
    for name, v in bound.arguments.items():
        kind = sig.parameters[name].kind
        if kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise Refusal(f"no rule for *args/**kwargs in {type(m).__name__}.forward; no file written")
        is_tensor = isinstance(v, torch.Tensor) or (
            isinstance(v, (tuple, list)) and v and all(isinstance(t, torch.Tensor) for t in v)
        )
        (tensors if is_tensor else consts)[name] = v
    return tensors, consts


CREATION = ("ones", "zeros", "full", "empty")  # torch.ones(t, t): sizes from a shape, which fx cannot pass


@contextlib.contextmanager
def _creation(tracer):
    """``torch.ones(T, T)`` with traced sizes: recorded as a call (fx's own proxies stop at the argument parser)."""
    saved = {name: getattr(torch, name) for name in CREATION}

    def wrap(fn):
        def call(*args, **kwargs):
            flat = [*args, *[y for x in args if isinstance(x, (tuple, list)) for y in x], *kwargs.values()]
            if any(isinstance(a, fx.Proxy) for a in flat):
                return tracer.create_proxy("call_function", fn, args, kwargs)
            return fn(*args, **kwargs)

        return call

    for name, fn in saved.items():
        setattr(torch, name, wrap(fn))
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(torch, name, fn)


def _trace_one(path: str, m: nn.Module, args: list, kwargs: dict) -> tuple[Traced, list]:
    tensors, consts = _bind(m, args, kwargs)
    for name, v in tensors.items():
        if isinstance(v, (tuple, list)):
            raise Refusal(
                f"no rule for a tuple of tensors as the argument {name!r} of {type(m).__name__}.forward "
                f"(pass the tensors separately); no file written"
            )
    tracer = _Tracer(m, tensors)
    tracer.consts = consts
    try:
        with _creation(tracer):
            graph = tracer.trace(m, concrete_args=consts or None)
    except DiptychError:
        raise
    except Exception as e:  # fx cannot follow this code: one line naming it
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise Refusal(
            f"no rule: torch.fx cannot trace {type(m).__name__}.forward ({type(e).__name__}: {msg}); no file written"
        ) from None
    fx.GraphModule(m, graph)  # owning module, for dead-code elimination's purity check
    graph.eliminate_dead_code()
    _drop_guards(graph, tensors)
    return Traced(path, m, graph, consts), tracer.calls


def _drop_guards(graph: fx.Graph, tensors: dict) -> None:
    """fx's checks on constant arguments (``_assert_is_none``...) compute nothing to translate, and the
    constants' own placeholders go with them."""
    for node in list(graph.nodes):
        if node.op == "call_function" and getattr(node.target, "__name__", "").startswith("_assert"):
            graph.erase_node(node)
    graph.eliminate_dead_code()
    for node in list(graph.nodes):
        if node.op == "placeholder" and node.target not in tensors and not node.users:
            graph.erase_node(node)


def trace(model: nn.Module, inputs: list) -> list[Traced]:
    """Every called user-class instance of ``model``, in call order: the model first."""
    out: list[Traced] = []
    seen: set[str] = set()
    todo = [("", model, list(inputs), {})]
    while todo:
        path, m, args, kwargs = todo.pop(0)
        if path in seen:
            continue
        seen.add(path)
        traced, calls = _trace_one(path, m, args, kwargs)
        out.append(traced)
        for sub, a, k in calls:
            full = f"{path}.{sub}" if path else sub
            if full not in seen:
                todo.append((full, m.get_submodule(sub), a, k))
    return out


# --- the hyperparameters each module was built with ------------------------------------------------------


@contextlib.contextmanager
def recording():
    """Record the constructor arguments of every ``nn.Module`` built inside: ``{id(module): (module, {argument:
    value})}``, read from the locals of its class's ``__init__`` as it is entered (a profile hook; the
    module is kept, so that ids stay unique)."""
    calls: dict[int, tuple] = {}
    previous = sys.getprofile()

    def hook(frame, event, arg):
        if event == "call" and frame.f_code.co_name == "__init__":
            obj = frame.f_locals.get("self")
            own = getattr(type(obj).__init__, "__code__", None) if isinstance(obj, nn.Module) else None
            if own is frame.f_code and id(obj) not in calls:
                info = inspect.getargvalues(frame)
                values = {k: info.locals[k] for k in info.args[1:]}
                if info.varargs or info.keywords:
                    values = None
                calls[id(obj)] = (obj, values)

    sys.setprofile(hook)
    try:
        yield calls
    finally:
        sys.setprofile(previous)


def constructor_args(m: nn.Module, calls: dict) -> dict | None:
    """``{parameter: value}`` that ``type(m).__init__`` received (defaults filled in), or None if unknown."""
    if id(m) not in calls or calls[id(m)][0] is not m:
        return None
    return None if calls[id(m)][1] is None else dict(calls[id(m)][1])


def init_defaults(cls) -> dict:
    """``{parameter: default}`` of ``cls.__init__`` (``inspect.Parameter.empty`` where there is none)."""
    sig = inspect.signature(cls.__init__)
    return {k: p.default for k, p in list(sig.parameters.items())[1:]}

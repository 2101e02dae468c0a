"""(private, imports torch and flax) ``translate``: a torch model -> Flax NNX source, then the proof.

1. The model is traced (:mod:`._fx`) in training mode on the example inputs; its state (weights, running
   statistics, the random generator) is restored afterwards.
2. Every user-class instance is written (:mod:`._classes`, :mod:`._emit`), instances are gathered into
   classes (:mod:`._source`), and the file is assembled and ruff-formatted.
3. The source is imported, its model built, the torch weights moved in by ``diptych.port.convert``'s
   automatic mapping, and ``diptych.port.check`` compares outputs, gradients and N optimizer steps.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib.util
import re
import sys
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from diptych.errors import DiptychError
from diptych.port import _fx, _source, _variants
from diptych.port._classes import Writer
from diptych.port._fx import Refusal
from diptych.port._source import CLASS, fill, literal, resolve, signature
from diptych.port.guard import first_line, user_code


@dataclass
class Translation:
    """What ``translate`` gives: the NNX ``source``, the weight ``mapping`` ``{torch layer: NNX layer}``, the
    check's ``report`` (a :class:`~diptych.port._check.PortReport`, None with ``check=False``), the NNX
    ``classes`` written, and ``model``: the translated NNX model holding the torch model's weights."""

    source: str
    mapping: dict = field(default_factory=dict)
    report: object = None
    classes: list = field(default_factory=list)
    model: object = None

    @property
    def ok(self) -> bool:
        return self.report is None or self.report.ok

    def write(self, path) -> None:
        from diptych.fsio import atomic_write

        atomic_write(path, self.source.encode())


# --- classes -----------------------------------------------------------------------------------------


def _tokens(text: str) -> set[str]:
    return set(re.findall(f"{CLASS}(.*?){CLASS}", text))


def _buckets(w: Writer, paths: list[str], names: dict) -> list[list[str]]:
    """Instances with the same ``__init__`` and ``__call__`` text (an uncalled one joins its ``__init__``'s)."""

    def init_of(inst):
        return [re.sub(f"{CLASS}(.*?){CLASS}", lambda m: names[m.group(1)], x) for x in inst.init]

    by_init: dict = {}
    for p in paths:
        by_init.setdefault(("\n".join(init_of(w.inst[p])), tuple(w.inst[p].params)), []).append(p)
    out = []
    for group in by_init.values():
        by_call: dict = {}
        for p in group:
            call = w.inst[p].call
            if call is not None:
                by_call.setdefault(tuple(_code(x) for x in call), []).append(p)
        subs = list(by_call.values()) or [[]]
        subs[0] += [p for p in group if w.inst[p].call is None]
        out += subs
    if len(out) > 1 and _variants.unify(w, out, init_of):
        return [[p for b in out for p in b]]
    return out


def _groups(w: Writer, paths: list[str], names: dict) -> list[tuple[list[str], list[str]]]:
    """Instances of one torch class split into groups that one NNX class can write: [(paths, slot exprs)]."""
    out = []
    for sub in _buckets(w, paths, names):
        out += _split(w, sub)
    return out


def _split(w: Writer, paths: list[str]) -> list[tuple[list[str], list[str]]]:
    insts = [w.inst[p] for p in paths]
    scopes = [i.args or {} for i in insts]
    if any(i.args is None for i in insts):
        scopes = [{} for _ in insts]
    exprs, conflicts = [], []
    for j, (_, hint) in enumerate(insts[0].slots):
        have = [(i.slots[j][0], s) for i, s in zip(insts, scopes) if i.slots[j][0] is not _variants.WILDCARD]
        hint = next((i.slots[j][1] for i in insts if i.slots[j][0] is not _variants.WILDCARD), hint)
        e = resolve([v for v, _ in have], [s for _, s in have], hint, w.dataclasses) if have else "None"
        exprs.append(e)
        if e is None:
            conflicts.append(j)
    if not conflicts:
        return [(paths, exprs)]
    parts: dict = {}
    for p, i in zip(paths, insts):
        parts.setdefault(tuple(repr(i.slots[j][0]) for j in conflicts), []).append(p)
    return [g for sub in parts.values() for g in _split(w, sub)]


def _code(line: str) -> str:
    return line.split("  # ", 1)[0]


def _merged(lines: list[str]) -> str:
    """One call line of several instances: the shape comment keeps the dimensions they share."""
    notes = [x.split("  # ", 1)[1] if "  # " in x else "" for x in lines]
    if len(set(notes)) == 1:
        return lines[0]
    shapes = [n.strip("()").split(", ") for n in notes]
    if len({len(sh) for sh in shapes}) != 1:
        return _code(lines[0])
    dims = [d[0] if len(set(d)) == 1 else "?" for d in zip(*shapes)]
    return f"{_code(lines[0])}  # ({', '.join(dims)})"


def _class_source(w: Writer, name: str, paths: list[str], exprs: list[str], names: dict) -> str:
    inst = w.inst[paths[0]]
    cls = type(inst.module)
    sig = signature(cls, inst.args if all(w.inst[p].args is not None for p in paths) else None, w.dataclasses)
    body = fill("\n".join(inst.init), exprs, names).splitlines() or ["pass"]
    lines = [f"class {name}(nnx.Module):", f"    def __init__({sig}):"]
    lines += [f"        {x}" for x in body]
    if inst.call is not None:
        lines += ["", f"    def __call__(self, {', '.join(inst.params)}):"]
        calls = [w.inst[p].call for p in paths if w.inst[p].call is not None]
        lines += [f"        {_merged(list(x))}" for x in zip(*calls)]
    return "\n".join(lines)


def assemble(w: Writer, model: nn.Module, header: str) -> tuple[str, list[str]]:
    """The whole file: dataclasses, the classes (children first), and the factory ``nnx_model``."""
    paths_by_type: dict = {}
    for p in sorted(w.inst, key=lambda p: (-p.count(".") - (1 if p else 0), p)):
        paths_by_type.setdefault(type(w.inst[p].module), []).append(p)
    names: dict[str, str] = {}
    used: set[str] = set()
    classes: list[tuple[str, str]] = []
    todo = list(paths_by_type)
    while todo:
        ready = [t for t in todo if all(_tokens("\n".join(w.inst[p].init)) <= set(names) for p in paths_by_type[t])]
        if not ready:
            raise Refusal("no rule for a class that contains itself; no file written")
        for t in ready:
            todo.remove(t)
            for paths, exprs in _groups(w, paths_by_type[t], names):
                name, k = t.__name__, 1
                while name in used or name in ("nnx_model",):
                    k += 1
                    name = f"{t.__name__}{k}"
                used.add(name)
                for p in paths:
                    names[p] = name
                classes.append((name, _class_source(w, name, paths, exprs, names)))
    top = names[""]
    args = w.inst[""].args
    parts = []
    for k, v in (args or {}).items():
        if isinstance(v, nn.Module):
            w.start = len(w.slots)
            sub = next(p for p, c in model.named_children() if c is v)
            text = w.construct(v, sub)
            parts.append(fill(text, [literal(x, w.dataclasses) for x, _ in w.slots[w.start :]], names))
        else:
            parts.append(f"{k}={literal(v, w.dataclasses)}")
    factory = (
        f"def nnx_model(rngs: nnx.Rngs) -> {top}:\n"
        f'    """{top} with the hyperparameters the torch model was built with."""\n'
        f"    return {top}({', '.join([*parts, 'rngs=rngs'])})"
    )
    body = "\n\n\n".join([*(_source.dataclass_source(c) for c in w.dataclasses.values()), *(s for _, s in classes)])
    body += "\n\n\n" + factory + "\n"
    source = f'"""{header}"""\n\n{_source.imports(body)}\n\n\n{body}'
    return source, [n for n, _ in classes]


# --- the whole path ----------------------------------------------------------------------------------


def _spatial(model: nn.Module) -> int:
    for m in model.modules():
        if isinstance(m, (nn.modules.conv._ConvNd,)):
            return m.weight.dim() - 2
    return 0


def _build(torch_model, seed: int):
    """A model and its recorded constructor arguments, from a module or a zero-argument factory."""
    if isinstance(torch_model, nn.Module):
        return torch_model, {}
    if not callable(torch_model):
        raise Refusal(f"translate needs a torch nn.Module or a factory returning one, not {type(torch_model).__name__}")
    torch.manual_seed(seed)
    with _fx.recording() as calls, user_code("the torch factory"):
        model = torch_model()
    if not isinstance(model, nn.Module):
        raise Refusal(f"the factory returned {type(model).__name__}, not a torch nn.Module")
    return model, calls


@contextlib.contextmanager
def one_thread():
    """Torch on one thread: the example batches are tiny, and on a busy machine two threads wait on each
    other (measured: 40 small conv + batch-norm calls, 3.8 s on 2 threads, 0.02 s on 1)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _trace(model: nn.Module, inputs: list):
    state = {k: v.clone() for k, v in model.state_dict(keep_vars=False).items()}
    modes = {m: m.training for m in model.modules()}
    rng = torch.get_rng_state()
    try:
        with user_code("the torch model", [x.numpy() for x in inputs]), torch.no_grad(), one_thread():
            model.eval()(*inputs)
        model.train()
        with torch.no_grad(), one_thread():
            return _fx.trace(model, inputs)
    finally:
        model.load_state_dict(state)
        for m, t in modes.items():
            m.training = t
        torch.set_rng_state(rng)


def source_of(model, inputs, calls, jax_layout: bool, origin: str) -> tuple[str, list[str]]:
    spatial = _spatial(model)
    traced = _trace(model, inputs)
    w = Writer(model, traced, calls, jax_layout, spatial)
    top_cl = [jax_layout and spatial > 0 and x.dim() == spatial + 2 and x.is_floating_point() for x in inputs]
    w.emit("", top_cl)
    w.emit_inits()
    shapes = ", ".join(str(tuple(x.shape)) for x in inputs)
    if jax_layout and spatial:
        layout, flags = "it takes channels-last maps (B, *spatial, C) and keeps them so inside", "--flatten same"
    elif spatial:
        layout = "it takes the torch model's layout; convolutions see channels-last maps inside"
        flags = "--jax-layout same --flatten same"
    else:
        layout, flags = "it takes the torch model's inputs", ""
    title = (
        f"{type(model).__name__} in Flax NNX, translated from the PyTorch model {origin} by `diptych port translate`."
    )
    convert = ("diptych port convert " + flags).strip()
    body = (
        f"Traced on inputs of shape {shapes}; {layout}. Every layer sits at its torch attribute path, so "
        f"`{convert}` moves the torch weights in with no mapping file."
    )
    header = textwrap.fill(title, 100) + "\n\n" + textwrap.fill(body, 100) + "\n"
    source, classes = assemble(w, model, header)
    return _source.ruff_format(source), classes


def load_source(source: str, tag: str):
    """Import the translated source (a private module, from a temporary file removed once it is imported)
    and return its ``nnx_model`` factory."""
    name = f"_diptych_translated_{tag}_{hashlib.sha1(source.encode()).hexdigest()[:12]}"
    with tempfile.TemporaryDirectory(prefix="diptych-translate-") as folder:
        path = Path(folder) / f"{tag}_nnx.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return module.nnx_model


def _deterministic(tm: nn.Module, nm) -> None:
    """Dropout off on both sides for the check (its random masks cannot agree)."""
    from flax import nnx

    for m in tm.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
        if isinstance(m, nn.MultiheadAttention):
            m.dropout = 0.0
    for _, m in nnx.iter_modules(nm):
        if isinstance(m, nnx.Dropout):
            m.rate = 0.0
        if isinstance(m, nnx.MultiHeadAttention):
            m.dropout_rate = 0.0


def translate(
    torch_model,
    example_inputs,
    *,
    check: bool = True,
    train: bool = True,
    steps: int = 10,
    jax_layout: bool = False,
    optimizer: str = "sgd",
    lr: float = 1e-2,
    seed: int = 0,
) -> Translation:
    """See :func:`diptych.port.translate`."""
    from flax import nnx

    from diptych.port._check import check as run_check
    from diptych.port._convert import convert
    from diptych.port._nnx import build_abstract

    model, calls = _build(torch_model, seed)
    arrays = [np.asarray(x) for x in example_inputs]
    inputs = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
    mod = sys.modules.get(type(model).__module__)
    where = Path(mod.__file__).name if getattr(mod, "__file__", None) else type(model).__module__
    try:
        source, classes = source_of(model, inputs, calls, jax_layout, f"{type(model).__name__} ({where})")
    except DiptychError:
        raise
    except Exception as e:  # the translator's own failure: one line, and no file
        raise Refusal(f"the translator failed on this model ({first_line(e)}); no file written") from None
    tr = Translation(source, classes=classes)
    factory = load_source(source, re.sub(r"\W", "_", type(model).__name__.lower()))
    layout = "auto" if jax_layout else "same"
    if check:
        tm, nm = copy.deepcopy(model), build_abstract(lambda: factory(rngs=nnx.Rngs(seed)))
        _deterministic(tm, nm)
        with one_thread():
            tr.report = run_check(
                tm, nm, arrays, train=train, steps=steps, optimizer=optimizer, lr=lr, jax_layout=layout, flatten="same"
            )
        tr.mapping = tr.report.mapping
    tr.model = build_abstract(lambda: factory(rngs=nnx.Rngs(seed)))
    mapping = convert(model, tr.model, inputs=arrays, jax_layout=layout, flatten="same")
    tr.mapping = tr.mapping or mapping
    return tr

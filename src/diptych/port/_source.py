"""(private) The translation's source file: instances gathered into classes, hyperparameters named, the
file assembled and ruff-formatted (numpy only: it works on the :class:`~diptych.port._classes.Writer`'s text).

A torch class becomes one NNX class when its instances read alike. Each hyperparameter slot is written
as the expression of the class's own constructor arguments that gives the slot's value in *every*
instance (``cin``, ``config.n_embd``, ``4 * dim``...), else as the literal when all instances agree. An
instance that can agree with no other (a different structure, or a literal that differs) gets a class of
its own, numbered (``BasicBlock2``).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import subprocess
import sys

from diptych.port import _ops

SLOT, CLASS, LIST, ITEM, END, OPT, OPT_END, KW = "\x00", "\x01", "\x02", "\x03", "\x04", "\x05", "\x06", "\x07"
MISSING = object()
ALIASES = [
    {"eps", "epsilon", "norm_eps", "layer_norm_eps", "ln_eps"},
    {"p", "dropout", "drop", "dropout_rate", "drop_rate", "attn_dropout", "resid_dropout", "pdrop"},
    {"stride", "strides"},
    {"padding", "pad"},
    {"bias", "use_bias"},
    {"num_layers", "n_layers", "n_layer", "layers", "depth"},
    {"num_heads", "n_head", "n_heads", "heads", "nhead"},
    {"kernel_size", "kernel", "k", "ks", "patch_size", "patch"},
    {"stride", "patch_size", "patch"},
    {"in_channels", "in_features", "cin", "c_in", "in_ch", "in_chans", "in_dim", "inplanes", "input_dim", "input_size"},
    {"out_channels", "out_features", "cout", "c_out", "out_ch", "out_dim", "planes", "output_dim", "num_classes"},
    {"out_features", "out_channels", "classes", "num_classes", "n_classes"},
    {
        "num_embeddings",
        "vocab_size",
        "vocab",
        "n_vocab",
        "block_size",
        "max_len",
        "n_positions",
        "num_patches",
        "context",
    },
]
WIDTHS = {"n_embd", "d_model", "embed_dim", "embedding_dim", "dim", "hidden_dim", "width", "emb_dim", "hidden_size"}
WIDTHS |= {"hidden", "channels", "n_channels", "hidden_channels"}
for _g in ALIASES[-5:-1]:
    _g |= WIDTHS  # a model's width fills a layer's in and out sizes
ALIASES.append(WIDTHS | {"normalized_shape", "ndim", "num_features", "num_channels"})


def _similar(name: str, hint: str) -> bool:
    name = name.rsplit(".", 1)[-1]
    return name == hint or any(name in g and hint in g for g in ALIASES)


def _same(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return type(a) is type(b) and a == b
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if dataclasses.is_dataclass(a) or dataclasses.is_dataclass(b):
        return a is b or (type(a) is type(b) and a == b)
    return a is b if not isinstance(a, str) else a == b


def _special(v) -> bool:
    return v is None or isinstance(v, (bool, str)) or (isinstance(v, (int, float)) and v in (0, 1, -1))


def _names(scope: dict) -> list[tuple[str, object]]:
    """Every (expression, value) a class's arguments offer: the arguments, then a dataclass's fields."""
    out = list(scope.items())
    for k, v in scope.items():
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            out += [(f"{k}.{f.name}", getattr(v, f.name)) for f in dataclasses.fields(v)]
    return out


def _get(scope: dict, expr: str):
    head, _, field = expr.partition(".")
    v = scope.get(head, MISSING)
    return getattr(v, field, MISSING) if field and v is not MISSING else v


def _overlap(name: str, hint: str) -> int:
    """Words two names share (``channels_hidden`` and ``hidden_dim``: 1)."""
    words = lambda t: {w for w in t.rsplit(".", 1)[-1].lower().split("_") if w not in ("", "n", "num")}  # noqa: E731
    return len(words(name) & words(hint))


def candidates(scope: dict, hint: str, v, derived: bool = False) -> list[tuple[str, object]]:
    """Expressions of the arguments in ``scope`` that give ``v``: ``(text, getter)``, best first: an argument
    named like the slot, one sharing a word with it, ``k * width``; and only with ``derived`` (several
    instances with different values vouch for it) any other argument, product or quotient."""
    names = _names(scope)
    direct = [(n, lambda s, n=n: _get(s, n)) for n, x in names if _same(x, v)]
    out = [c for c in direct if _similar(c[0], hint)]
    if not _special(v):
        near = [c for c in direct if not _similar(c[0], hint) and _overlap(c[0], hint)]
        out += sorted(near, key=lambda c: -_overlap(c[0], hint))
    ints = [(n, x) for n, x in names if isinstance(x, int) and not isinstance(x, bool) and x >= 1]
    if isinstance(v, int) and not isinstance(v, bool) and v >= 2:  # k * width, with a width-like name
        for k in (2, 3, 4, 8):
            out += [
                (f"{k} * {n}", lambda s, n=n, k=k: _mul(_get(s, n), k))
                for n, x in ints
                if x * k == v and _similar(n, hint)
            ]
    if derived and not _special(v):
        out += [c for c in direct if c not in out]
    if derived and isinstance(v, int) and not isinstance(v, bool) and v >= 2:
        for k in (2, 3, 4, 8):
            out += [(f"{k} * {n}", lambda s, n=n, k=k: _mul(_get(s, n), k)) for n, x in ints if x * k == v]
        for n1, x1 in ints:
            for n2, x2 in ints:
                if n1 != n2 and x2 > 1 and x1 // x2 == v and x1 % x2 == 0:
                    out.append((f"{n1} // {n2}", lambda s, a=n1, b=n2: _div(_get(s, a), _get(s, b))))
    if isinstance(v, (tuple, list)) and v and len(set(v)) == 1 and isinstance(v[0], int):
        for text, get in candidates(scope, hint, v[0], derived):
            out.append(("(" + ", ".join([text] * len(v)) + ")", lambda s, g=get, n=len(v): _rep(g(s), n)))
    return out


def _mul(x, k):
    return x * k if isinstance(x, int) and not isinstance(x, bool) else MISSING


def _div(a, b):
    ok = all(isinstance(x, int) and not isinstance(x, bool) for x in (a, b)) and b and a % b == 0
    return a // b if ok else MISSING


def _rep(x, n):
    return (x,) * n if x is not MISSING else MISSING


def literal(v, dataclasses_seen: dict) -> str:
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        dataclasses_seen[type(v).__name__] = type(v)
        fields = []
        for f in dataclasses.fields(v):
            x = getattr(v, f.name)
            if f.default is dataclasses.MISSING or not _same(x, f.default):
                fields.append(f"{f.name}={literal(x, dataclasses_seen)}")
        return f"{type(v).__name__}({', '.join(fields)})"
    if isinstance(v, (tuple, list)):
        body = ", ".join(literal(x, dataclasses_seen) for x in v)
        return f"({body}{',' if len(v) == 1 else ''})" if isinstance(v, tuple) else f"[{body}]"
    s = _ops.literal(v)
    return s if s is not None else repr(v)


def resolve(values: list, scopes: list, hint: str, seen: dict) -> str | None:
    """The expression for one slot over a class's instances, or None when they cannot share one. An optional
    keyword's slot (``hint`` is ``(name, default)``) that has its default everywhere is the default."""
    v0 = values[0]
    if isinstance(hint, tuple):
        hint, default = hint
        if all(_same(v, default) or (v == default and not isinstance(v, bool)) for v in values):
            return literal(default, seen)
    varies = any(not _same(v, v0) for v in values)
    for text, get in candidates(scopes[0], hint, v0, varies):
        if all(_same(get(s), v) for s, v in zip(scopes, values)):
            return text
    if all(_same(v, v0) for v in values):
        return literal(v0, seen)
    return None


def _lists(text: str) -> str:
    """Each ModuleList: a comprehension when its items read alike, else the items listed."""
    pat = re.compile(f"{LIST}([^{LIST}{END}]*){END}")
    while True:
        m = pat.search(text)
        if m is None:
            return text
        count, *items = m.group(1).split(ITEM)
        if len(items) > 1 and len(set(items)) == 1:
            body = f"[{items[0]} for _ in range({count})]"
        else:
            body = "[" + ", ".join(items) + "]"
        text = text[: m.start()] + body + text[m.end() :]


def fill(template: str, exprs: list[str], names: dict) -> str:
    out = re.sub(f"{SLOT}(\\d+){SLOT}", lambda m: exprs[int(m.group(1))], template)
    out = re.sub(f"{CLASS}(.*?){CLASS}", lambda m: names[m.group(1)], out)
    # an optional keyword (``, strides=1``) is left out where it says the default (innermost first)
    inner = re.compile(f"{OPT}([^{OPT}{OPT_END}{KW}]*){OPT_END}(, \\w+=)([^{OPT}{KW}]*){OPT}")
    kw = re.compile(f"{KW}([^{OPT}{OPT_END}{KW}]*){OPT_END}(\\w+=)([^{OPT}{KW}]*), {KW}")
    while True:
        new = kw.sub(_keyword, inner.sub(_optional, out))
        if new == out:
            return _lists(out)
        out = new


def _keyword(m) -> str:
    return "" if m.group(3) == m.group(1) else f"{m.group(2)}{m.group(3)}, "


def _optional(m) -> str:
    return "" if m.group(3) == m.group(1) else m.group(2) + m.group(3)


def signature(cls, args: dict | None, seen: dict) -> str:
    """``self, a, b=2, *, rngs: nnx.Rngs``: the kept torch arguments, their literal defaults as a suffix."""
    if not args:
        return "self, *, rngs: nnx.Rngs"
    params = inspect.signature(cls.__init__).parameters
    parts, defaults = [], []
    for k in args:
        d = params[k].default if k in params else inspect.Parameter.empty
        ok = d is not inspect.Parameter.empty and (d is None or _ops.literal(d) is not None or isinstance(d, tuple))
        defaults.append(literal(d, seen) if ok else None)
    # defaults only on the trailing arguments that all have one
    cut = len(defaults)
    while cut > 0 and defaults[cut - 1] is not None:
        cut -= 1
    for i, k in enumerate(args):
        parts.append(k if i < cut else f"{k}={defaults[i]}")
    return "self, " + ", ".join(parts) + ", *, rngs: nnx.Rngs"


def dataclass_source(cls) -> str:
    lines = ["@dataclasses.dataclass", f"class {cls.__name__}:"]
    for f in dataclasses.fields(cls):
        t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "object")
        t = t if t in ("int", "float", "bool", "str") else "object"
        d = f.default if f.default is not dataclasses.MISSING else None
        lines.append(f"    {f.name}: {t} = {literal(d, {})}")
    return "\n".join(lines)


IMPORTS = [
    ("dataclasses.", "import dataclasses"),
    ("functools.", "import functools"),
    ("math.", "import math"),
    ("", ""),
    ("jax.", "import jax"),
    ("jnp.", "import jax.numpy as jnp"),
    ("nnx.", "from flax import nnx"),
    ("", ""),
    ("nnx_layers.", "from diptych.port import nnx_layers"),
]


def imports(body: str) -> str:
    out, block = [], []
    for key, line in IMPORTS:
        if not key:
            if block:
                out.append("\n".join(block))
            block = []
        elif re.search(rf"(?<![\w.]){re.escape(key)}", body):
            block.append(line)
    if block:
        out.append("\n".join(block))
    return "\n\n".join(out)


def ruff_format(source: str) -> str:
    """The source through ``ruff format`` (isolated, line length 120), if ruff is installed."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "ruff", "format", "--isolated", "--line-length", "120", "-"],
            input=source,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return source
    return done.stdout if done.returncode == 0 and done.stdout else source

"""Model size overrides (``--set KEY=VALUE``) and model specs rebuilt from a weights file's metadata.

Every field of a model spec (:mod:`diptych.specs`) that the user may choose is a key, whatever the spec:
the keys come from the dataclass's fields and their types, so a new spec gets them without code here.
A spec names the fields that are not the user's in its ``fixed`` attribute (the kind, and what the data
decides: classes, input shape, a vocabulary) and says why a model cannot be built in its ``problem()``
hook. A spec with a conv stack also takes ``channels=A,B,...``: each conv's out-channels, their count the
number of convs (added convs copy the last one's kernel, stride, padding and pool).

    >>> from diptych.tasks import get_task
    >>> apply_overrides(get_task("mnist1d-mlp").model, parse_sets(["hidden=64,32"])).describe()
    'MLP 40-64-32-10'
    >>> apply_overrides(get_task("mnist1d-cnn").model, {"channels": "8,16"}).describe()
    'CNN1d conv5(8) conv3(16) fc(10,)'
    >>> apply_overrides(get_task("mnist1d-mlp").model, {"layers": "6"})
    Traceback (most recent call last):
    ...
    diptych.errors.DiptychError: --set layers=6: an MLP has no key 'layers'; its keys: hidden
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Mapping, Sequence

from diptych.errors import DiptychError
from diptych.specs import GATES, ConvSpec, _Spec

MAX_INT = 2**31 - 1
MAX_DEPTH = 1024  # layers in a stack (num_layers, layers, widths in hidden, convs): sizing a model loops over them
DEPTHS = ("num_layers", "layers")
MAX_PARAMS = 1 << 28  # 1 GiB of float32 weights: the largest weights file diptych reads (weights.MAX_FILE_BYTES)
CHOICES = {"cell": tuple(GATES)}  # str fields with a fixed set of values (a spec may add its own: ``choices``)
WHY_FIXED = {  # why a fixed field is not the user's to set
    "kind": "it names the kind of model; choose another task",
    "vocab": "the corpus decides it",
    "num_classes": "the data decides it",
    "in_features": "the data decides it",
    "in_size": "the data decides it (your own images: --image-size)",
    "in_channels": "the data decides it (your own images: --channels)",
    "dims": "the data decides it",
    "sized_by_data": "the data decides it",
    "convs": "set the conv stack with channels=A,B,...",
}
NAMES = {"charlm": "a character LM", "vit": "a ViT"}  # how a kind reads in a sentence (else "an MLP", "a GPT")
KINDS = {"int": "a whole number >= 1", "float": "a finite number", "bool": "true or false"}


@functools.cache
def spec_kinds() -> dict[str, type]:
    """``{kind: spec class}`` for every model spec diptych defines (the dataclasses below ``_Spec`` in
    :mod:`diptych.specs` and :mod:`diptych.transformer_specs`, each naming its ``kind``)."""
    import diptych.transformer_specs  # noqa: F401  (its specs are _Spec's too)

    kinds, todo = {}, [_Spec]
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        fields = dataclasses.fields(cls) if dataclasses.is_dataclass(cls) else ()
        kind = next((f.default for f in fields if f.name == "kind"), None)
        if isinstance(kind, str) and cls.__module__.startswith("diptych."):
            kinds.setdefault(kind, cls)
    return kinds


def parse_sets(items: Sequence[str]) -> dict[str, str]:
    """``["hidden=64", "cell=gru"]`` -> ``{"hidden": "64", "cell": "gru"}`` (a later key wins); a dash in a
    key is an underscore (``num-layers``)."""
    out: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or not key:
            raise DiptychError(f"--set {item!r}: write KEY=VALUE, e.g. --set hidden=64")
        out[key] = value.strip()
    return out


# ----------------------------------------------------------------------------- keys and their types


def _value_kind(tp) -> str | None:
    """``int``, ``float``, ``bool``, ``str``, ``ints`` (a tuple of ints) or ``None``: not a command-line value."""
    if tp in (int, float, bool, str):
        return tp.__name__
    args = typing.get_args(tp)
    if typing.get_origin(tp) is tuple and args and all(a is int or a is Ellipsis for a in args):
        return "ints"
    return None


@functools.cache
def _hints(cls: type) -> dict:
    return typing.get_type_hints(cls)


def keys(spec) -> dict[str, str]:
    """``{key: value kind}``: what ``--set`` accepts for ``spec``, in field order."""
    fixed = set(getattr(spec, "fixed", ()))
    out = {}
    for f in dataclasses.fields(spec):
        if f.name == "convs":
            out["channels"] = "ints"
        elif f.name not in fixed and (kind := _value_kind(_hints(type(spec))[f.name])) is not None:
            out[f.name] = kind
    return out


def describe_key(spec, key: str, kind: str) -> str:
    """What a key takes, in words: ``a whole number >= 1``, ``one of rnn, lstm, gru``, ..."""
    if kind == "str":
        options = choices_of(spec).get(key)
        return f"one of {', '.join(options)}" if options else "a word"
    if kind == "ints":
        return "whole numbers >= 1 separated by commas, e.g. 64,32" + (" (or none)" if key != "channels" else "")
    return KINDS[kind]


def choices_of(spec) -> dict[str, tuple[str, ...]]:
    """``{field: allowed values}`` of the str fields with fixed choices (a spec adds its own as ``choices``)."""
    return CHOICES | dict(getattr(spec, "choices", {}))


def _coerce(spec, key: str, kind: str, raw) -> object:
    """The typed value of ``key`` from a command-line string (or a JSON value from a run's record)."""
    if isinstance(raw, str):
        return _parse(spec, key, kind, raw)
    ok = {
        "int": isinstance(raw, int) and not isinstance(raw, bool),
        "float": isinstance(raw, int | float) and not isinstance(raw, bool),
        "bool": isinstance(raw, bool),
        "str": False,
        "ints": isinstance(raw, list | tuple) and all(isinstance(v, int) and not isinstance(v, bool) for v in raw),
    }[kind]
    if not ok:
        raise ValueError
    return _parse(spec, key, kind, ",".join(map(str, raw)) if kind == "ints" else str(raw).lower())


def _parse(spec, key: str, kind: str, text: str) -> object:
    if kind == "bool":
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError
        return text.lower() in ("true", "1", "yes")
    if kind == "float":
        value = float(text)
        if not math.isfinite(value):
            raise ValueError
        return value
    if kind == "str":
        options = choices_of(spec).get(key)
        if options is not None and text not in options or not text:
            raise ValueError
        return text
    if kind == "ints":
        parts = [] if text.lower() in ("", "none") and key != "channels" else text.split(",")
        return tuple(_whole(p) for p in parts)
    return _whole(text)


def _whole(text: str) -> int:
    value = int(text.strip())
    if not 1 <= value <= MAX_INT:
        raise ValueError
    return value


# ----------------------------------------------------------------------------- applying them


def _name(spec) -> str:
    """``an MLP``, ``a CNN``, ``a character LM``: the model's kind in words."""
    if spec.kind in NAMES:
        return NAMES[spec.kind]
    return f"{'an' if spec.kind[0] in 'aefhilmnorsx' else 'a'} {spec.kind.upper()}"


def resolve_overrides(spec, given: Mapping[str, object]) -> dict[str, object]:
    """``given`` (strings from ``--set``, or the typed values a run recorded) checked against ``spec``'s keys
    and typed: ``{"hidden": (64,)}``. One line names the valid keys for an unknown or fixed key, and what
    the key takes for a bad value."""
    valid = keys(spec)
    listed = ", ".join(valid) or "none"
    out = {}
    for key, raw in given.items():
        shown = f"--set {key}={','.join(map(str, raw)) if isinstance(raw, list | tuple) else raw}"
        if key not in valid:
            fields = {f.name for f in dataclasses.fields(spec)}
            if key in fields:
                why = WHY_FIXED.get(key, "it is not a size you choose")
                raise DiptychError(f"{shown}: {key} of {_name(spec)} is fixed: {why}; its keys: {listed}")
            raise DiptychError(f"{shown}: {_name(spec)} has no key {key!r}; its keys: {listed}")
        try:
            out[key] = _coerce(spec, key, valid[key], raw)
        except ValueError:
            what = describe_key(spec, key, valid[key])
            raise DiptychError(f"{shown}: {key} takes {what} (the keys of {_name(spec)}: {listed})") from None
    return out


def apply_overrides(spec, given: Mapping[str, object] | None):
    """``spec`` with the overrides applied (see :func:`resolve_overrides`), checked: a model that cannot
    be built is one line (:func:`check_model`)."""
    if not given:
        return spec
    values = resolve_overrides(spec, given)
    fields = {k: v for k, v in values.items() if k != "channels"}
    if "channels" in values:
        fields["convs"] = _with_channels(spec.convs, values["channels"])
    new = dataclasses.replace(spec, **fields)
    shown = " ".join(f"--set {k}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in values.items())
    check_model(new, base=spec, prefix=shown)
    return new


def _with_channels(convs: tuple[ConvSpec, ...], channels: tuple[int, ...]) -> tuple[ConvSpec, ...]:
    """Each conv's out-channels; more channels than convs add convs like the last one, fewer drop the last ones."""
    if not channels:
        raise DiptychError("--set channels=: give at least one conv's channels, e.g. channels=32,64")
    return tuple(dataclasses.replace(convs[min(i, len(convs) - 1)], out_channels=c) for i, c in enumerate(channels))


def overrides_record(values: Mapping[str, object]) -> dict:
    """The overrides as JSON values (tuples as lists), for run.json and the checkpoint."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def overrides_for_run(spec, sets: Sequence[str], saved: dict | None) -> dict:
    """A training run's overrides from its ``--set`` items, typed and checked, as JSON values (for the run's
    settings). Resuming (``saved``: the checkpoint's settings), the run keeps its own and refuses ``--set``
    items that would change its model."""
    given = resolve_overrides(spec, parse_sets(sets))
    if saved is None:
        return overrides_record(given)
    kept = saved.get("model_overrides") or {}
    if given and apply_overrides(spec, given) != apply_overrides(spec, kept):
        used = " ".join(f"--set {k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in kept.items())
        raise DiptychError(
            f"cannot change --set when resuming (the run used {used or 'no --set'}); start a new run with another --out"
        )
    return kept


def check_model(spec, base=None, prefix: str = "the model") -> None:
    """Refuse, in one line, a model that cannot be built: a size out of range, a choice not offered, the
    spec's own ``problem()`` (a conv stack that shrinks its input to nothing, ...), an input shape the data
    does not have (against ``base``, the task's model), or more parameters than a weights file holds."""
    why = _problem(spec, base)
    if why:
        raise DiptychError(f"{prefix}: {why}")


def _problem(spec, base) -> str | None:
    for f in dataclasses.fields(spec):  # first what would make sizing the model slow: a depth, a long stack
        value = getattr(spec, f.name)
        if isinstance(value, int) and not isinstance(value, bool) and value < 0:  # (a vocabulary is 0 until known)
            return f"{f.name} must not be negative, got {value}"
        if f.name in DEPTHS and isinstance(value, int) and value > MAX_DEPTH:
            return f"{f.name} must be at most {MAX_DEPTH}, got {value}"
        if isinstance(value, tuple) and len(value) > MAX_DEPTH:
            return f"{f.name} has {len(value)} entries, more than {MAX_DEPTH}"
    valid = keys(spec)
    for key, kind in valid.items():
        value = getattr(spec, key, None) if key != "channels" else tuple(c.out_channels for c in spec.convs)
        if kind == "int" and not 1 <= value <= MAX_INT or kind == "ints" and any(not 1 <= v <= MAX_INT for v in value):
            return f"{key} must be {describe_key(spec, key, kind)}, got {value}"
        if kind == "str" and key in choices_of(spec) and value not in choices_of(spec)[key]:
            return f"{key} must be {describe_key(spec, key, kind)}, got {value!r}"
    why = spec.problem()
    if why:
        return why
    try:
        getattr(spec, "validate", lambda: None)()  # a spec may refuse itself this way too (the transformers)
    except DiptychError as e:
        return str(e)
    if base is not None and (misfit := data_misfit(base, spec)):
        return misfit
    if (n := spec.num_params()) > MAX_PARAMS:
        return f"{n:,} parameters is more than a weights file holds ({MAX_PARAMS:,} at most); choose smaller sizes"
    return None


def data_misfit(base, spec) -> str | None:
    """Why ``spec`` cannot read the data of a task whose model is ``base`` (another kind of model, another
    input shape, another number of classes), or ``None``. A model that reads tokens (it has a ``vocab``)
    chooses its own window length."""
    if type(spec) is not type(base):
        return f"it is {_name(spec)} and the task's model is {_name(base)}"
    by_data = ("in_size", "in_channels", "num_classes") if getattr(base, "sized_by_data", False) else ()
    for name in getattr(base, "fixed", ()):
        if name in ("kind", "vocab", *by_data) or not hasattr(base, name):
            continue
        if getattr(spec, name) != getattr(base, name):
            return f"its {name} is {getattr(spec, name)}, the task's data gives {getattr(base, name)}"
    if not hasattr(base, "vocab") and not by_data and spec.input_shape() != base.input_shape():
        return f"its input is {spec.input_shape()}, the task's data is {base.input_shape()} per sample"
    return None


# ----------------------------------------------------------------------------- specs from metadata


def spec_to_dict(spec) -> dict:
    """The spec as JSON values, as a weights file's metadata ``model`` holds it."""
    return dataclasses.asdict(spec)


def spec_from_dict(data: dict, source: str):
    """The model spec a weights file's metadata ``model`` describes (:func:`spec_to_dict`), every field
    checked against its type and the model against :func:`check_model`; one line if it is not one."""

    def bad(why: str) -> DiptychError:
        return DiptychError(f"{source}: metadata 'model' {why}; the file was not written by diptych train")

    cls = spec_kinds().get(data.get("kind")) if isinstance(data.get("kind"), str) else None
    if cls is None:
        raise bad(f"names no model diptych builds (kind {data.get('kind')!r}; known: {', '.join(spec_kinds())})")
    try:
        spec = _from_json(cls, data)
    except (TypeError, ValueError) as e:
        raise bad(str(e) or "has a field of the wrong type") from None
    try:
        why = _problem(spec, None)
    except (ArithmeticError, ValueError, TypeError, KeyError, IndexError) as e:
        why = f"cannot be sized ({type(e).__name__})"
    if why:
        raise bad(f"describes a model that cannot be built ({why})")
    return spec


def _from_json(tp, value):
    """``value`` (JSON) as type ``tp``: a dataclass from a dict, tuples from lists, a union's first fit."""
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise TypeError(f"has {type(value).__name__} where {tp.__name__} fields belong")
        fields = {f.name: f for f in dataclasses.fields(tp) if f.init}
        unknown = sorted(set(value) - set(fields))
        if unknown:
            raise TypeError(f"has an unknown field {unknown[0]!r} for {tp.__name__}")
        hints = _hints(tp)
        kw = {k: _from_json(hints[k], v) for k, v in value.items()}
        missing = [f for f in fields.values() if f.name not in kw and f.default is dataclasses.MISSING]
        missing = [f for f in missing if f.default_factory is dataclasses.MISSING]
        if missing:
            raise TypeError(f"lacks the field {missing[0].name!r} of {tp.__name__}")
        return tp(**kw)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                return _from_json(option, value)
            except (TypeError, ValueError):
                continue
        raise TypeError(f"has {value!r:.40} where {tp} belongs")
    if origin is tuple:
        if not isinstance(value, list | tuple) or (Ellipsis not in args and len(value) != len(args)):
            raise TypeError(f"has {value!r:.40} where a list belongs")
        items = [args[0]] * len(value) if Ellipsis in args else list(args)
        return tuple(_from_json(t, v) for t, v in zip(items, value))
    if tp is type(None) and value is None:
        return None
    if tp is bool and isinstance(value, bool) or tp is str and isinstance(value, str):
        return value
    if tp is int and isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_INT:
        return value
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise TypeError(f"has {value!r:.40} where {getattr(tp, '__name__', tp)} belongs")

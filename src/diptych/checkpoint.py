"""Checkpoints: everything needed to continue a run, in one atomically written safetensors file.

Tensors: ``params.<canonical name>`` (the model) and ``opt.<key>`` (the optimizer state: ``step``,
``exp_avg.<name>``, ``exp_avg_sq.<name>`` or ``momentum_buffer.<name>``), both in the canonical
PyTorch layout, so a checkpoint is framework-neutral: a run started by one twin can be resumed by
the other. A language model's recurrent state between two windows is ``carry.h`` (and ``carry.c``
for an LSTM), ``(layers, B, H)`` as ``torch.nn.LSTM`` holds it. Metadata: task, framework, the
position (``epoch`` finished epochs and ``step`` steps into the next one), the run config, the
per-epoch records so far and the current epoch's losses.

Every random choice in a run is a function of ``(seed, epoch, step)`` (the batch order, the
augmentation; the models have no dropout), so the position *is* the random state: a run resumed
from any checkpoint takes the very batches, in the very order, it would have taken.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from diptych.errors import DiptychError
from diptych.weights import atomic_save, check_weights, read_safetensors

FORMAT = "diptych.checkpoint/1"
FILENAME = "checkpoint.safetensors"


def save(
    path: str | Path,
    params: dict[str, np.ndarray],
    opt_state: dict[str, np.ndarray],
    carry: dict[str, np.ndarray] | None = None,
    **meta,
) -> None:
    """Write atomically: a reader (or a ``kill -9``) sees the old file or the new one, never half of one."""
    tensors = {f"params.{k}": v for k, v in params.items()}
    tensors.update({f"opt.{k}": v for k, v in opt_state.items()})
    tensors.update({f"carry.{k}": v for k, v in (carry or {}).items()})
    atomic_save(tensors, path, {"format": FORMAT, **meta})


def load(path: str | Path, task: str):
    """Return ``(params, opt_state, meta)``; refuse a checkpoint of another task, and one whose
    metadata, weights or optimizer state would crash or silently change the resumed run.
    ``meta["carry"]``: the recurrent state saved mid-epoch (``{}`` when there is none)."""
    tensors, meta = read_safetensors(path, what="checkpoint")
    if meta.get("format") != FORMAT:
        raise DiptychError(f"{path} is not a diptych checkpoint; pass the --out folder of a diptych train run")
    if meta.get("task") != task:
        raise DiptychError(
            f"{path} is a checkpoint of task {meta.get('task')!r}, not {task!r}; "
            f"resume with `diptych train {meta.get('task')}` or use another --out folder"
        )
    params = {k[len("params.") :]: v for k, v in tensors.items() if k.startswith("params.")}
    opt = {k[len("opt.") :]: v for k, v in tensors.items() if k.startswith("opt.")}
    check_meta(meta, str(path))
    check_state(params, opt, task, meta["config"]["optimizer"], str(path), meta["config"].get("model_overrides"))
    meta["carry"] = {k[len("carry.") :]: v for k, v in tensors.items() if k.startswith("carry.")}
    _check_carry(meta["carry"], params, meta, str(path))
    return params, opt, meta


_RESUME = "start a new run with another --out"


def _fail(source: str, what: str) -> DiptychError:
    return DiptychError(f"{source}: {what}; the checkpoint is damaged or not diptych's: {_RESUME}")


def _is_int(v, lo: int, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _is_num(v, lo: float, hi: float) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and lo <= v <= hi


def check_meta(meta: dict, source: str) -> None:
    """The metadata the driver resumes from: required keys, types and ranges (see :func:`save`)."""
    from diptych.tasks import OPTIMIZERS, SCHEDULES

    config = meta.get("config")
    if not isinstance(config, dict):
        raise _fail(source, "no run config in its metadata")
    rules = {
        "epochs": lambda v: _is_num(v, 0, 10**7) and v > 0,  # a fraction trains part of the last epoch
        "batch_size": lambda v: _is_int(v, 1, 2**31),
        "lr": lambda v: _is_num(v, 0, 1e6) and v > 0,
        "optimizer": lambda v: v in OPTIMIZERS,
        "schedule": lambda v: v in SCHEDULES,
        "warmup_fraction": lambda v: _is_num(v, 0, 1),
        "seed": lambda v: _is_int(v, 0, 2**63 - 1),
        "compile": lambda v: isinstance(v, bool),
        "precision": lambda v: v in ("fp32", "bf16"),
        "split": lambda v: v is None or isinstance(v, str),
        "model_overrides": lambda v: isinstance(v, dict),
    }
    config.setdefault("model_overrides", {})  # checkpoints from before --set: the task's own model
    for key, ok in rules.items():
        if key not in config or not ok(config[key]):
            raise _fail(source, f"config {key} is {config.get(key, 'missing')!r}")
    epoch, step = meta.get("epoch"), meta.get("step", 0)
    if not _is_int(epoch, 0, 10**7):
        raise _fail(source, f"epoch is {epoch!r}, not a count of finished epochs")
    if not _is_int(step, 0, 2**40) or (epoch == 0 and step == 0):
        raise _fail(source, f"step is {step!r}, not a position in epoch {epoch + 1}")
    losses = meta.get("epoch_losses", [])
    if not isinstance(losses, list) or len(losses) != step or not all(isinstance(v, int | float) for v in losses):
        raise _fail(
            source,
            f"its {len(losses) if isinstance(losses, list) else '?'} losses of the current epoch "
            f"do not match its {step} steps",
        )
    for key in ("wall_seconds", "compile_seconds", "steady_seconds"):
        if not _is_num(meta.get(key), 0, 1e10):
            raise _fail(source, f"{key} is {meta.get(key, 'missing')!r}, not a number of seconds")
    if not _is_int(meta.get("steady_samples"), 0, 2**62):
        raise _fail(source, f"steady_samples is {meta.get('steady_samples', 'missing')!r}")
    history = meta.get("epochs")
    if (
        not isinstance(history, list)
        or len(history) != epoch
        or not all(
            isinstance(r, dict) and all(_is_num(r.get(k), 0, 1e10) for k in ("test_accuracy", "wall_seconds"))
            for r in history
        )
    ):
        raise _fail(source, f"its epoch records do not describe {epoch} finished epochs")
    curve = meta.get("loss_curve", [])
    if not isinstance(curve, list) or not all(
        isinstance(c, list) and len(c) == 2 and _is_num(c[0], 0, 2**62) and isinstance(c[1], int | float) for c in curve
    ):
        raise _fail(source, "its loss curve is not a list of [step, loss] pairs")


_MOMENTS = {
    "adam": ("exp_avg", "exp_avg_sq"),
    "adamw": ("exp_avg", "exp_avg_sq"),
    "sgd": (),
    "momentum": ("momentum_buffer",),
    "nesterov": ("momentum_buffer",),
}


def check_state(
    params: dict[str, np.ndarray],
    opt: dict[str, np.ndarray],
    task: str,
    optimizer: str,
    source: str,
    overrides: dict | None = None,
) -> None:
    """Weights of the task's model (with the run's ``--set`` ``overrides``), finite; the optimizer state
    complete for ``optimizer`` (every moment present, shaped as its parameter, finite) and a step count
    that is a whole number."""
    from diptych.tasks import get_task

    try:
        spec = get_task(task).with_model_overrides(overrides).model
    except DiptychError as e:
        raise _fail(source, f"its model overrides are not the task's ({e})") from None
    if all(v.ndim >= 2 for k, v in params.items() if k.endswith(".weight")):  # else check_weights names the wrong one
        spec = spec.sized_like(params)  # what the data decided: a language model's vocabulary, own images' sizes
    shapes = spec.param_shapes()
    check_weights(params, shapes, source)  # names, shapes, float32, finite
    step = opt.get("step")
    if (
        step is None
        or step.size != 1
        or not np.isfinite(step).all()
        or float(step.reshape(-1)[0]) != int(step.reshape(-1)[0])
        or not 0 <= int(step.reshape(-1)[0]) < 2**31
    ):
        shown = "missing" if step is None else f"{step.reshape(-1)[:2].tolist()}"
        raise _fail(source, f"the optimizer step is {shown}, not a whole number of steps")
    expected = {f"{m}.{name}": shape for m in _MOMENTS[optimizer] for name, shape in shapes.items()}
    missing = sorted(set(expected) - set(opt))
    extra = sorted(set(opt) - set(expected) - {"step"})
    if missing or extra:
        what = f"lacks {missing[0]!r}" if missing else f"has {extra[0]!r}"
        raise _fail(
            source,
            f"its {optimizer} state {what} ({len(missing)} missing, {len(extra)} unexpected); "
            f"resuming would silently restart the optimizer",
        )
    for key, shape in expected.items():
        v = opt[key]
        if v.dtype != np.float32 or tuple(v.shape) != tuple(shape) or not np.isfinite(v).all():
            raise _fail(
                source,
                f"optimizer tensor {key!r} is {v.dtype} {tuple(v.shape)}"
                f"{'' if np.isfinite(v).all() else ' with NaN/inf'}, expected float32 {tuple(shape)}",
            )


def _check_carry(carry: dict[str, np.ndarray], params: dict[str, np.ndarray], meta: dict, source: str) -> None:
    """A saved recurrent state: ``h`` (and ``c``) ``(layers, B, H)``, float32, finite, only mid-epoch."""
    if not carry:
        return
    if meta.get("step", 0) == 0 or set(carry) - {"h", "c"} or "h" not in carry:
        raise _fail(source, f"it holds a recurrent state {sorted(carry)} where none belongs")
    shape = carry["h"].shape
    hidden = {v.shape[-1] for k, v in params.items() if k.startswith("rnn.weight_hh_l")}
    for key, v in carry.items():
        if (
            v.dtype != np.float32
            or v.ndim != 3
            or v.shape != shape
            or {v.shape[-1]} != hidden
            or not np.isfinite(v).all()
        ):
            raise _fail(source, f"its recurrent state {key!r} is {v.dtype} {tuple(v.shape)}, not (L, B, H) float32")

"""``diptych convert``: move weights between the canonical file and each framework's native one.

Formats, chosen by the file name:

* ``.safetensors``: canonical weights (PyTorch layout + diptych metadata); either twin loads them.
* ``.pt`` / ``.pth``: a plain PyTorch ``state_dict`` saved with ``torch.save``.
* ``.msgpack``: Flax NNX parameters (``nnx.to_pure_dict`` of the ``nnx.Param`` state), serialized
  with ``flax.serialization``; kernels in JAX layout (``(kH, kW, I, O)``, dense ``(in, out)``).

The model is recognised from the tensors' names and shapes, so no task needs to be named (pass
``--task`` to record one in the output's metadata).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diptych.backends import load_backend
from diptych.errors import DiptychError
from diptych.tasks import TASKS, get_task
from diptych.weights import check_weights, read_safetensors, save_weights

FORMATS = {".safetensors": "canonical", ".pt": "torch", ".pth": "torch", ".msgpack": "jax"}


def _format(path: Path) -> str:
    try:
        return FORMATS[path.suffix]
    except KeyError:
        raise DiptychError(f"{path}: unknown weights format {path.suffix or '(no suffix)'!r}; "
                           f"use one of {', '.join(FORMATS)}") from None


def _specs():
    seen = []
    for task in TASKS.values():
        if task.model not in seen:
            seen.append(task.model)
    return seen


def _fit(spec, params: dict[str, np.ndarray]):
    """A language model's spec with the vocabulary size of these weights (others unchanged)."""
    if hasattr(spec, "with_vocab") and "embed.weight" in params:
        return spec.with_vocab(params["embed.weight"].shape[0])
    return spec


def _match_spec(params: dict[str, np.ndarray], source: str):
    for spec in _specs():
        spec = _fit(spec, params)
        shapes = spec.param_shapes()
        if set(params) == set(shapes) and all(tuple(params[k].shape) == shapes[k] for k in shapes):
            return spec
    raise DiptychError(f"{source}: these tensors match no diptych model "
                       f"(see `diptych list`); was it written by diptych?")


def read_any(path: str | Path):
    """Return ``(canonical params, spec, metadata)`` for a weights file of any supported format."""
    path = Path(path)
    fmt = _format(path)
    if not path.is_file():
        raise DiptychError(f"weights file {path} does not exist; check the path")
    if fmt == "canonical":
        params, meta = read_safetensors(path)
        spec = _match_spec(params, str(path))
    elif fmt == "torch":
        params, meta = load_backend("torch").weights.read_native(path), {}
        spec = _match_spec(params, str(path))
    else:
        jw = load_backend("jax").weights
        for spec in _specs():
            try:
                params = jw.read_native(path, spec)
            except DiptychError:
                continue
            spec = _fit(spec, params)
            shapes = spec.param_shapes()
            if set(params) == set(shapes) and all(tuple(params[k].shape) == shapes[k] for k in shapes):
                break
        else:
            raise DiptychError(f"{path}: not a Flax msgpack parameter file of any diptych model")
        meta = {}
    params = {k: np.asarray(v) for k, v in params.items()}
    check_weights(params, spec.param_shapes(), str(path))
    return params, spec, meta


def convert(src: str | Path, dst: str | Path, task: str | None = None) -> dict:
    params, spec, meta = read_any(src)
    dst = Path(dst)
    fmt = _format(dst)
    if task is not None and _fit(get_task(task).model, params) != spec:
        raise DiptychError(f"{src} holds a {spec.describe()}, not the model of task {task!r}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "canonical":
        # audio front end + statistics; a language model's vocabulary
        keep = {k: meta[k] for k in ("features", "vocab") if k in meta}
        save_weights(params, dst, task=task or meta.get("task"), source=str(src), **keep)
    elif fmt == "torch":
        load_backend("torch").weights.save_native(params, dst)
    else:
        load_backend("jax").weights.save_native(params, dst, spec)
    return {"source": str(src), "output": str(dst), "format": fmt, "model": spec.describe(),
            "tensors": len(params)}

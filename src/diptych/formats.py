"""Weights files in any of diptych's three formats, recognised by name and shape.

* ``.safetensors``: canonical weights (PyTorch layout + diptych metadata); either twin loads them.
* ``.pt`` / ``.pth``: a plain PyTorch ``state_dict`` saved with ``torch.save``.
* ``.msgpack``: Flax NNX parameters (``nnx.to_pure_dict`` of the ``nnx.Param`` state), serialized
  with ``flax.serialization``; kernels in JAX layout (``(kH, kW, I, O)``, dense ``(in, out)``).

The model is recognised from the tensors' names and shapes, so no task needs to be named.
Native formats are read by the twin that owns them, imported only when such a file is read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diptych.backends import load_backend
from diptych.errors import DiptychError
from diptych.inference import InferenceMeta
from diptych.overrides import spec_from_dict
from diptych.tasks import TASKS
from diptych.weights import check_weights, read_safetensors, require_file

FORMATS = {".safetensors": "canonical", ".pt": "torch", ".pth": "torch", ".msgpack": "jax"}


def file_format(path: Path) -> str:
    """``canonical``, ``torch`` or ``jax``, from the file name's suffix."""
    try:
        return FORMATS[path.suffix]
    except KeyError:
        raise DiptychError(
            f"{path}: unknown weights format {path.suffix or '(no suffix)'!r}; use one of {', '.join(FORMATS)}"
        ) from None


def read_tensors(path: str | Path) -> dict[str, np.ndarray]:
    """The named tensors of a ``.safetensors`` file or a PyTorch ``state_dict`` (``.pt``/``.pth``), whatever model
    they belong to (``diptych port`` reads a user's own model's weights this way)."""
    path = Path(path)
    if path.suffix in (".pt", ".pth"):
        return load_backend("torch").weights.read_native(path)
    if path.suffix == ".safetensors":
        return read_safetensors(path)[0]
    raise DiptychError(f"{path}: expected .pt, .pth or .safetensors")


def _specs():
    seen = []
    for task in TASKS.values():
        if task.model not in seen:
            seen.append(task.model)
    return seen


def _match_spec(params: dict[str, np.ndarray], source: str, like=None):
    for spec in [like] * (like is not None) + _specs():
        spec = spec.sized_like(params)
        shapes = spec.param_shapes()
        if set(params) == set(shapes) and all(tuple(params[k].shape) == shapes[k] for k in shapes):
            return spec
    raise DiptychError(
        f"{source}: these tensors match no diptych model (see `diptych list`); was it written by diptych? "
        f"(a model trained with --set: `diptych convert` it to .safetensors with --task and the same --set)"
    )


def read_any(path: str | Path, like=None):
    """Return ``(canonical params, spec, metadata)`` for a weights file of any supported format. The model
    is the one the metadata describes (``weights.safetensors`` from ``diptych train``); for a file without
    one, ``like`` (a spec, e.g. with ``--set`` overrides) or the first of the registry's that fits the tensors."""
    path = Path(path)
    fmt = file_format(path)
    require_file(path)
    if fmt == "canonical":
        params, meta = read_safetensors(path)
        model = InferenceMeta.read(path, meta).model
        spec = spec_from_dict(model, str(path)) if model is not None else _match_spec(params, str(path), like)
    elif fmt == "torch":
        params, meta = load_backend("torch").weights.read_native(path), {}
        spec = _match_spec(params, str(path), like)
    else:
        jw = load_backend("jax").weights
        for spec in [like] * (like is not None) + _specs():
            try:
                params = jw.read_native(path, spec)
            except DiptychError:
                continue
            spec = spec.sized_like(params)
            shapes = spec.param_shapes()
            if set(params) == set(shapes) and all(tuple(params[k].shape) == shapes[k] for k in shapes):
                break
        else:
            raise DiptychError(
                f"{path}: not a Flax msgpack parameter file of any diptych model (a model trained with --set: "
                f"`diptych convert` it with --task and the same --set)"
            )
        meta = {}
    params = {k: np.asarray(v) for k, v in params.items()}
    check_weights(params, spec.param_shapes(), str(path))
    return params, spec, meta

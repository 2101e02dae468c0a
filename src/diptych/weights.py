"""Canonical weights: a flat ``{name: np.ndarray}`` dict in PyTorch layout, saved with safetensors.

Names and shapes come from the model spec (:meth:`MLPSpec.param_shapes`,
:meth:`CNNSpec.param_shapes`): conv kernels ``(O, I, kH, kW)`` / ``(O, I, k)``, linear
weights ``(out, in)``, and ``fc1`` after a conv stack reads its input flattened in ``(C, H, W)``
order. Each backend's ``weights.py`` converts its own parameters to and from this dict.

safetensors never unpickles anything, so loading a weights file cannot run code.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from diptych.errors import DiptychError

FORMAT = "diptych.weights/1"


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed onto ``path``
    (``os.replace`` is atomic), so a reader never sees a half-written file. Used by every writer of
    weights and checkpoints, in the neutral core and in both backends' native formats."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_save(tensors: dict[str, np.ndarray], path: str | Path, metadata: dict) -> None:
    """Write a safetensors file atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        save_file(
            {k: np.ascontiguousarray(v) for k, v in tensors.items()},
            tmp,
            metadata={k: json.dumps(v) for k, v in metadata.items()},
        )


def read_safetensors(path: str | Path, what: str = "weights") -> tuple[dict[str, np.ndarray], dict]:
    """Read tensors and JSON metadata, turning every kind of damage into one clear line."""
    path = Path(path)
    if not path.is_file():
        raise DiptychError(f"{what} file {path} does not exist; check the path")
    try:
        tensors = load_file(path)
        from safetensors import safe_open

        with safe_open(path, framework="numpy") as f:
            raw_meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise DiptychError(f"{path} is not a readable safetensors file ({e}); it may be truncated or corrupt") from None
    try:
        meta = {k: json.loads(v) for k, v in raw_meta.items()}
    except json.JSONDecodeError:
        raise DiptychError(f"{path}: metadata is not diptych's; was it written by diptych?") from None
    return tensors, meta


def save_weights(params: dict[str, np.ndarray], path: str | Path, **metadata) -> None:
    atomic_save(params, path, {"format": FORMAT, **metadata})


def check_weights(params: dict[str, np.ndarray], expected: dict[str, tuple[int, ...]], source: str) -> None:
    """Refuse weights of another model: every name present, nothing extra, shapes and dtype right."""
    for name, shape in expected.items():
        if name not in params:
            raise DiptychError(f"{source}: missing tensor {name!r}; these weights belong to another model")
        got = params[name]
        if tuple(got.shape) != tuple(shape):
            raise DiptychError(
                f"{source}: tensor {name!r} has shape {tuple(got.shape)}, the model expects "
                f"{tuple(shape)}; these weights belong to another model"
            )
        if got.dtype != np.float32:
            raise DiptychError(f"{source}: tensor {name!r} has dtype {got.dtype}, expected float32")
    extra = sorted(set(params) - set(expected))
    if extra:
        raise DiptychError(f"{source}: unexpected tensor {extra[0]!r}; these weights belong to another model")

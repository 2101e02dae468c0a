"""Canonical weights: a flat ``{name: np.ndarray}`` dict in PyTorch layout, saved with safetensors.

Names and shapes come from the model spec (:meth:`MLPSpec.param_shapes`,
:meth:`CNNSpec.param_shapes`): conv kernels ``(O, I, kH, kW)`` / ``(O, I, k)``, linear
weights ``(out, in)``, and ``fc1`` after a conv stack reads its input flattened in ``(C, H, W)``
order. Each backend's ``weights.py`` converts its own parameters to and from this dict.

safetensors never unpickles anything, so loading a weights file cannot run code.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from diptych.errors import DiptychError
from diptych.fsio import atomic_path  # noqa: F401  (re-exported: the backends' native writers use it)

FORMAT = "diptych.weights/1"


def atomic_save(tensors: dict[str, np.ndarray], path: str | Path, metadata: dict) -> None:
    """Write a safetensors file atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        save_file(
            {k: np.ascontiguousarray(v) for k, v in tensors.items()},
            tmp,
            metadata={k: json.dumps(v) for k, v in metadata.items()},
        )


def require_file(path: str | Path, what: str = "weights") -> Path:
    """``path`` as a :class:`Path` if it is a file; else one line saying what it is instead."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        raise DiptychError(f"{what} file {path} is a folder, not a file; pass the {what} file itself")
    if path.exists():
        raise DiptychError(f"{what} file {path} is not a regular file; pass the {what} file itself")
    raise DiptychError(f"{what} file {path} does not exist; check the path")


MAX_FILE_BYTES = 1 << 30  # 1 GiB: hundreds of times the largest diptych model; a bigger file is not ours
MAX_HEADER_BYTES = 1 << 26
_DTYPES = {"F32": "<f4", "F16": "<f2", "BF16": "<u2", "F64": "<f8", "I64": "<i8", "I32": "<i4"}


def read_safetensors(path: str | Path, what: str = "weights") -> tuple[dict[str, np.ndarray], dict]:
    """Read tensors and JSON metadata, turning every kind of damage into one clear line.

    The header is checked before any tensor is read (sizes against the file, shapes against byte
    counts, byte ranges tiling the data section with no overlap or gap), so nothing is allocated from a
    number the file states and no tensor is read from another's bytes. Floating tensors come back as
    float32: F16 and BF16 convert exactly, F64 only when every value is a float32 (else refused);
    I64/I32 (the optimizer's step) stay integers; other dtypes (F8, U8, BOOL...) are refused."""
    path = require_file(path, what)

    def bad(why: str) -> DiptychError:
        return DiptychError(f"{path} is not a readable safetensors file ({why}); it may be truncated or corrupt")

    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise DiptychError(f"{path}: {size:,} bytes is larger than any diptych {what} file; check the path")
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little") if size >= 8 else -1
            if not 2 <= n <= min(size - 8, MAX_HEADER_BYTES):
                raise bad(f"header length {n:,} does not fit the file's {size:,} bytes")
            header = json.loads(f.read(n))
            if not isinstance(header, dict):
                raise bad("the header is not a JSON object")
            raw_meta = header.pop("__metadata__", None) or {}
            entries = {name: _check_entry(name, e, size - 8 - n, bad, path) for name, e in header.items()}
            _check_tiling(entries, size - 8 - n, bad)
            tensors = {}
            for name, (dtype, shape, begin, end) in entries.items():
                f.seek(8 + n + begin)
                tensors[name] = _to_numpy(
                    np.frombuffer(f.read(end - begin), _DTYPES[dtype]).reshape(shape), dtype, name, path
                )
    except (OSError, ValueError, RecursionError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise bad(" ".join(str(e).split()) or type(e).__name__) from None
    if not isinstance(raw_meta, dict) or not all(isinstance(v, str) for v in raw_meta.values()):
        raise DiptychError(f"{path}: metadata is not diptych's; was it written by diptych?")
    try:
        meta = {k: json.loads(v) for k, v in raw_meta.items()}
    except (ValueError, RecursionError):
        raise DiptychError(f"{path}: metadata is not diptych's; was it written by diptych?") from None
    return tensors, meta


def _check_entry(name, e, data_len: int, bad, path: Path) -> tuple[str, tuple[int, ...], int, int]:
    if not isinstance(e, dict) or not isinstance(e.get("dtype"), str):
        raise bad(f"tensor {name!r} has no dtype")
    dtype, shape, offsets = e["dtype"], e.get("shape"), e.get("data_offsets")
    if dtype not in _DTYPES:
        raise DiptychError(
            f"{path}: tensor {name!r} has dtype {dtype}, which diptych does not read; weights are "
            f"float32 (F16, BF16 and exact F64 are converted): convert them to float32"
        )

    def ints(v) -> bool:
        return isinstance(v, list) and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in v)

    if not ints(shape) or len(shape) > 8 or not ints(offsets) or len(offsets) != 2:
        raise bad(f"tensor {name!r} has a malformed shape or offsets")
    begin, end = offsets
    if not begin <= end <= data_len or (end - begin) != math.prod(shape) * np.dtype(_DTYPES[dtype]).itemsize:
        raise bad(
            f"tensor {name!r}: shape {tuple(shape)} of {dtype} does not match bytes {begin}-{end} "
            f"of a {data_len:,}-byte data section"
        )
    return dtype, tuple(shape), begin, end


def _check_tiling(entries: dict, data_len: int, bad) -> None:
    """The tensors' byte ranges must tile the data section exactly, as safetensors itself requires: in
    order of offset each starts where the one before ended, the first at 0, the last at the section's end.
    An overlap would read one tensor from another's bytes; a gap or a tail, bytes no tensor owns."""
    at, before = 0, None
    for name, (_, _, begin, end) in sorted(entries.items(), key=lambda kv: kv[1][2:]):
        if begin < at:
            raise bad(
                f"tensor {name!r} (bytes {begin}-{end}) overlaps tensor {before!r}: one is read from the other's bytes"
            )
        if begin > at:
            raise bad(f"bytes {at}-{begin} of the data section belong to no tensor")
        at, before = end, name
    if at != data_len:
        raise bad(f"bytes {at}-{data_len} of the {data_len:,}-byte data section belong to no tensor")


def _to_numpy(x: np.ndarray, dtype: str, name: str, path: Path) -> np.ndarray:
    if dtype == "BF16":  # the upper half of a float32: exact
        return (x.astype(np.uint32) << 16).view(np.float32)
    if dtype == "F64":
        y = x.astype(np.float32)
        same = (y.astype(np.float64) == x) | (np.isnan(x) & np.isnan(y))
        if not same.all():
            raise DiptychError(
                f"{path}: tensor {name!r} is float64 with values float32 cannot hold exactly; "
                f"convert the weights to float32 yourself if that loss is acceptable"
            )
        return y
    return x.astype(np.float32) if dtype in ("F16", "F32") else x.copy()


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
        if not np.isfinite(got).all():
            raise DiptychError(
                f"{source}: tensor {name!r} holds NaN or infinite values; these weights are "
                f"broken (a diverged run?): use weights of a run that trained to the end"
            )
    extra = sorted(set(params) - set(expected))
    if extra:
        raise DiptychError(f"{source}: unexpected tensor {extra[0]!r}; these weights belong to another model")

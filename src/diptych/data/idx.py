"""Read IDX files (the MNIST container format), gzipped or raw, with strict checks.

Format: a 4-byte magic ``0x00 0x00 <dtype> <ndim>``, then ``ndim`` big-endian uint32 dims,
then the data in C order. We accept only unsigned bytes (dtype 0x08), which is what MNIST and
Fashion-MNIST use, and refuse anything else with a message naming the file.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from diptych.errors import DataError


def read_idx(path: str | Path) -> np.ndarray:
    """Return the array stored in an IDX file (``.gz`` or raw), e.g. ``(60000, 28, 28)`` uint8."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz" or raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: cannot decompress ({e}); delete it and download it again") from None
    return parse_idx(raw, name=str(path))


def parse_idx(raw: bytes, name: str = "<bytes>") -> np.ndarray:
    if len(raw) < 4:
        raise DataError(f"{name}: truncated IDX file ({len(raw)} bytes, no header); delete it and download it again")
    zero, dtype, ndim = raw[:2], raw[2], raw[3]
    if zero != b"\x00\x00" or dtype != 0x08 or not 1 <= ndim <= 4:
        raise DataError(
            f"{name}: not an IDX ubyte file (magic {raw[:4].hex()}, expected 0000080N); "
            "check that it is an MNIST-format file"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{name}: truncated IDX header; delete it and download it again")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape))
    got = len(raw) - header
    if got != expected:
        what = "truncated" if got < expected else "has trailing bytes"
        raise DataError(
            f"{name}: {what}: header says {shape} = {expected} bytes of data, found {got}; "
            "delete it and download it again"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> None:
    """Write a uint8 array as an IDX file (gzipped if the name ends in ``.gz``). Used by tests."""
    path = Path(path)
    array = np.ascontiguousarray(array, dtype=np.uint8)
    raw = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes() + array.tobytes()
    if compress if compress is not None else path.suffix == ".gz":
        raw = gzip.compress(raw)
    path.write_bytes(raw)

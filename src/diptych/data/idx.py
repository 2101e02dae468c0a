"""Read IDX files (the MNIST container format), gzipped or raw, with strict checks.

Format: a 4-byte magic ``0x00 0x00 <dtype> <ndim>``, then ``ndim`` big-endian uint32 dims,
then the data in C order. We accept only unsigned bytes (dtype 0x08), which is what MNIST and
Fashion-MNIST use, and refuse anything else with a message naming the file.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from diptych.errors import DataError

MAX_BYTES = 1 << 28  # 256 MiB: far above any MNIST-format file; callers pass the dataset's own size
GZIP_MAGIC = b"\x1f\x8b"


def is_gzip(path: str | Path) -> bool:
    """Whether the file is gzip-compressed, by its first bytes (not its name)."""
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def read_idx(path: str | Path, max_bytes: int = MAX_BYTES) -> np.ndarray:
    """Return the array stored in an IDX file (gzipped or raw, told apart by the magic bytes), e.g.
    ``(60000, 28, 28)`` uint8. Neither the file nor its inflated content may exceed ``max_bytes``,
    so a small gzip bomb cannot fill the memory."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise DataError(
                f"{path}: {size:,} bytes is more than this dataset's files can hold ({max_bytes:,}); "
                "it is not the right file: delete it and download it again"
            )
        raw = path.read_bytes()
        if raw[:2] == GZIP_MAGIC:
            raw = gunzip(raw, max_bytes, path)
        elif path.suffix == ".gz":
            raise DataError(f"{path}: named .gz but not gzip-compressed; delete it and download it again")
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot decompress ({e}); delete it and download it again") from None
    return parse_idx(raw, name=str(path))


def gunzip(data: bytes, max_bytes: int, path: Path) -> bytes:
    """Inflate every gzip member of ``data``, refusing output beyond ``max_bytes`` before allocating it."""
    out, total = [], 0
    while data:
        d = zlib.decompressobj(wbits=31)  # 31: a gzip header and trailer
        while True:
            chunk = d.decompress(data, max_bytes + 1 - total)
            total += len(chunk)
            out.append(chunk)
            if total > max_bytes:
                raise DataError(
                    f"{path}: inflates to more than {max_bytes:,} bytes, more than this dataset's "
                    "files hold; it is not the right file: delete it and download it again"
                )
            if d.eof or not d.unconsumed_tail:
                break
            data = d.unconsumed_tail
        if not d.eof:
            raise EOFError("the gzip stream is truncated")
        data = d.unused_data.lstrip(b"\0")  # another member may follow (padding zeros are allowed)
    return b"".join(out)


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
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = math.prod(shape)  # exact: Python ints do not overflow (numpy's int64 product would)
    got = len(raw) - header
    if got != expected:
        what = "truncated" if got < expected else "has trailing bytes"
        raise DataError(
            f"{name}: {what}: header says {shape} = {expected:,} bytes of data, found {got:,}; "
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

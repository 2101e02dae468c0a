import gzip

import numpy as np
import pytest

from diptych.data.idx import parse_idx, read_idx, write_idx
from diptych.errors import DataError


@pytest.mark.parametrize("name", ["images-idx3-ubyte", "images-idx3-ubyte.gz"])
def test_roundtrip_raw_and_gzip(tmp_path, name):
    arr = np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / name, arr)
    got = read_idx(tmp_path / name)
    assert got.shape == (7, 28, 28) and np.array_equal(got, arr)


def test_labels_1d(tmp_path):
    labels = np.arange(10, dtype=np.uint8)
    write_idx(tmp_path / "labels-idx1-ubyte", labels)
    assert np.array_equal(read_idx(tmp_path / "labels-idx1-ubyte"), labels)


def test_header_is_big_endian():
    raw = bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(6))
    assert parse_idx(raw).tolist() == [[0, 1, 2], [3, 4, 5]]


def test_truncated_data_names_file(tmp_path):
    arr = np.zeros((5, 4, 4), np.uint8)
    write_idx(tmp_path / "x-idx3-ubyte", arr)
    raw = (tmp_path / "x-idx3-ubyte").read_bytes()
    (tmp_path / "x-idx3-ubyte").write_bytes(raw[:-10])
    with pytest.raises(DataError, match=r"x-idx3-ubyte: truncated.*\(5, 4, 4\) = 80 bytes.*found 70"):
        read_idx(tmp_path / "x-idx3-ubyte")


def test_trailing_bytes(tmp_path):
    write_idx(tmp_path / "x", np.zeros((2, 2), np.uint8))
    (tmp_path / "x").write_bytes((tmp_path / "x").read_bytes() + b"\0")
    with pytest.raises(DataError, match="trailing bytes"):
        read_idx(tmp_path / "x")


@pytest.mark.parametrize(
    "raw,msg",
    [
        (b"", "truncated IDX file"),
        (b"\x00\x00\x08", "truncated IDX file"),
        (b"\x00\x00\x08\x03\x00\x00", "truncated IDX header"),
        (b"\x00\x00\x0d\x01\x00\x00\x00\x01\x00\x00\x00\x00", "not an IDX ubyte file"),  # float32 dtype
        (b"PK\x03\x04" + b"\0" * 20, "not an IDX ubyte file"),
    ],
)
def test_corrupt_headers(raw, msg):
    with pytest.raises(DataError, match=msg):
        parse_idx(raw, name="f")


def test_corrupt_gzip(tmp_path):
    good = gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x04abcd")
    (tmp_path / "f.gz").write_bytes(good[:-8])  # cut the gzip trailer
    with pytest.raises(DataError, match="f.gz: cannot decompress"):
        read_idx(tmp_path / "f.gz")

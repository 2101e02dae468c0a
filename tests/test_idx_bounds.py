"""IDX files from anywhere: header products that overflow, gzip bombs, gzip files without a .gz name,
labels outside the classes and images of the wrong size all end in one line (DataError)."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from diptych.data import load_dataset
from diptych.data.datasets import IDX_SOURCES
from diptych.data.idx import parse_idx, read_idx, write_idx
from diptych.errors import DataError


def test_a_dimension_product_that_overflows_int64_is_refused():
    raw = bytes([0, 0, 8, 4]) + (2**16).to_bytes(4, "big") * 4  # 2^64 elements: int64 product wraps to 0
    with pytest.raises(DataError, match="truncated: header says .*18,446,744,073,709,551,616 bytes"):
        parse_idx(raw, name="f")


def test_a_gzip_bomb_is_stopped_at_the_cap(tmp_path):
    (tmp_path / "bomb").write_bytes(gzip.compress(bytes([0, 0, 8, 1]) + (10**6).to_bytes(4, "big") + bytes(10**6)))
    assert (tmp_path / "bomb").stat().st_size < 2000
    with pytest.raises(DataError, match="inflates to more than 100,000 bytes"):
        read_idx(tmp_path / "bomb", max_bytes=100_000)
    assert read_idx(tmp_path / "bomb", max_bytes=10**6 + 8).shape == (10**6,)  # within the cap: read


def test_a_raw_file_above_the_cap_is_not_read(tmp_path):
    write_idx(tmp_path / "big", np.zeros(1000, np.uint8))
    with pytest.raises(DataError, match="1,008 bytes is more than this dataset's files can hold"):
        read_idx(tmp_path / "big", max_bytes=1000)


def test_gzip_members_and_a_fake_gz_name(tmp_path):
    arr = np.arange(6, dtype=np.uint8)
    raw = bytes([0, 0, 8, 1]) + (6).to_bytes(4, "big") + arr.tobytes()
    (tmp_path / "two").write_bytes(gzip.compress(raw[:5]) + gzip.compress(raw[5:]))  # concatenated members
    assert read_idx(tmp_path / "two").tolist() == arr.tolist()
    (tmp_path / "plain.gz").write_bytes(raw)
    with pytest.raises(DataError, match="named .gz but not gzip-compressed"):
        read_idx(tmp_path / "plain.gz")


def _write_set(folder, images=(28, 28), labels_max=9, gz_names=True, compress=True):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for role, stem in IDX_SOURCES["mnist"].files.items():
        n = 6 if "train" in role else 4
        arr = rng.integers(0, 256, (n, *images)) if "images" in role else rng.integers(0, labels_max + 1, n)
        if "labels" in role:
            arr[-1] = labels_max
        write_idx(folder / (stem + (".gz" if gz_names else "")), arr, compress=compress)
    return folder


def test_a_gzip_file_without_gz_name_is_md5_checked(tmp_path):
    folder = _write_set(tmp_path / "d", gz_names=False, compress=True)
    with pytest.raises(DataError, match="MD5 .* does not match the official"):
        load_dataset("mnist", folder)


def test_raw_files_with_valid_content_load(tmp_path):
    data = load_dataset("mnist", _write_set(tmp_path / "d", gz_names=False, compress=False))
    assert data.x_train.shape == (6, 28, 28) and data.y_test.max() == 9


@pytest.mark.parametrize(
    "kw,needle",
    [
        ({"labels_max": 10}, r"train-labels-idx1-ubyte: label 10 at index 5 is outside the 10 classes 0-9"),
        ({"labels_max": 255}, r"label \d+ at index \d is outside"),
        ({"images": (32, 32)}, "train-images-idx3-ubyte: images are 32x32, mnist models take 28x28"),
    ],
)
def test_labels_and_shapes_are_checked_against_the_task(tmp_path, kw, needle):
    with pytest.raises(DataError, match=needle):
        load_dataset("mnist", _write_set(tmp_path / "d", gz_names=False, compress=False, **kw))

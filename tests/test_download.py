"""The downloader: MD5 refusal, atomic caching, and one-line failures. No network: mirrors are
local file:// folders or a closed loopback port."""

import gzip
import hashlib

import numpy as np
import pytest

from diptych.data import datasets
from diptych.data.download import fetch
from diptych.data.idx import write_idx
from diptych.errors import DataError


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_fetch_checks_md5_and_caches(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    write_idx(mirror / "f-idx1-ubyte.gz", np.arange(5, dtype=np.uint8))
    dest = tmp_path / "cache"
    got = fetch("f-idx1-ubyte.gz", _md5(mirror / "f-idx1-ubyte.gz"), [mirror.as_uri()], dest)
    assert got == dest / "f-idx1-ubyte.gz" and got.read_bytes() == (mirror / "f-idx1-ubyte.gz").read_bytes()
    assert [p.name for p in dest.iterdir()] == ["f-idx1-ubyte.gz"]  # no temporary left behind


def test_md5_mismatch_is_refused_and_not_cached(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "f.gz").write_bytes(gzip.compress(b"tampered"))
    dest = tmp_path / "cache"
    with pytest.raises(DataError, match="MD5 .* != expected 0123"):
        fetch("f.gz", "0123" + "0" * 28, [mirror.as_uri()], dest)
    assert list(dest.iterdir()) == []


def test_second_mirror_used_after_bad_first(tmp_path):
    bad, good = tmp_path / "bad", tmp_path / "good"
    bad.mkdir(), good.mkdir()
    (bad / "f.gz").write_bytes(b"wrong")
    (good / "f.gz").write_bytes(b"right")
    got = fetch("f.gz", hashlib.md5(b"right").hexdigest(), [bad.as_uri(), good.as_uri()], tmp_path / "c")
    assert got.read_bytes() == b"right"


def test_unreachable_mirror_fails_in_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("DIPTYCH_OFFLINE", raising=False)
    monkeypatch.delenv("DIPTYCH_DATA", raising=False)
    monkeypatch.setenv("DIPTYCH_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError) as e:
        datasets.locate_idx_files(
            "mnist", datasets.IDX_SOURCES["mnist"], tmp_path / "empty", mirrors=("http://127.0.0.1:9/",)
        )  # closed port: refused at once
    msg = str(e.value)
    assert "\n" not in msg and "could not download train-images-idx3-ubyte.gz" in msg
    assert f"put the four IDX files (.gz) in {tmp_path / 'cache' / 'mnist'}" in msg


def test_local_gz_with_wrong_md5_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("DIPTYCH_DATA", raising=False)
    for role, stem in datasets.IDX_SOURCES["mnist"].files.items():
        write_idx(tmp_path / f"{stem}.gz", np.zeros((2, 28, 28) if "images" in role else (2,), np.uint8))
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz: MD5 .* does not match the official"):
        datasets.load_dataset("mnist", tmp_path)


def test_raw_idx_files_are_found_in_data_dir(tmp_path, monkeypatch):
    """Uncompressed IDX files (no published MD5) are parsed strictly instead."""
    monkeypatch.delenv("DIPTYCH_DATA", raising=False)
    rng = np.random.default_rng(0)
    for role, stem in datasets.IDX_SOURCES["fashion-mnist"].files.items():
        n = 6 if "train" in role else 4
        arr = rng.integers(0, 256, (n, 28, 28)) if "images" in role else rng.integers(0, 10, n)
        write_idx(tmp_path / "fashion-mnist" / stem if False else tmp_path / stem, arr)
    ds = datasets.load_dataset("fashion-mnist", tmp_path)
    assert ds.x_train.shape == (6, 28, 28) and ds.x_test.shape == (4, 28, 28)
    assert ds.x_train.dtype == np.float32 and abs(float(ds.x_train.mean())) < 1e-5

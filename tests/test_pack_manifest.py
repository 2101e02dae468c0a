"""A pack's manifest is untrusted input: `diptych data verify` and training from the pack refuse a damaged
or hostile manifest in one line naming the key (missing keys, wrong types, bad counts, dtypes and shapes,
deep nesting), and never read a shard outside the pack (`../`, an absolute path, a symlink leading out).
The pack is tiny (MNIST-1D-shaped random rows) and every refusal comes before any training."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_one_line_error, cli_in_process
from diptych.data import Dataset, load_dataset
from diptych.data.packed import MANIFEST, shard_name
from diptych.data.packing import PackWriter, pack_dataset
from diptych.errors import DiptychError

SHARD0 = shard_name("train", 0, 3)


@pytest.fixture(scope="module")
def seed_pack(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 40)).astype(np.float32), rng.integers(0, 10, 16).astype(np.int32)
    out = tmp_path_factory.mktemp("seed") / "pack"
    pack_dataset(Dataset("mnist1d", x[:12], y[:12], x[12:], y[12:]), out, shards=3, progress=False)
    return out


@pytest.fixture
def pack(seed_pack, tmp_path) -> Path:
    """A copy of the tiny pack to damage."""
    return Path(shutil.copytree(seed_pack, tmp_path / "pack", symlinks=True))


def edit(pack: Path, change) -> None:
    manifest = json.loads((pack / MANIFEST).read_text())
    change(manifest)
    (pack / MANIFEST).write_text(json.dumps(manifest))  # NaN and Infinity written as JSON's extensions


def verify(pack: Path):
    return cli_in_process("data", "verify", str(pack))


def train(pack: Path):
    return cli_in_process(
        *("train", "mnist1d-mlp", "--framework", "torch", "--epochs", "1", "--batch-size", "4"),
        *("--data-dir", str(pack), "--out", str(pack.parent / "run"), "--no-progress"),
    )


def shard(m: dict, i: int = 0) -> dict:
    return m["splits"]["train"]["shards"][i]


# Each: a change to the manifest, and what the one-line refusal names.
DAMAGE = {
    "no splits": (lambda m: m.pop("splits"), "splits is missing"),
    "no train split": (lambda m: m["splits"].pop("train"), "splits.train is missing"),
    "no fields": (lambda m: m.pop("fields"), "fields is missing"),
    "no sha256": (lambda m: shard(m).pop("sha256"), "splits.train.shards[0].sha256 is missing"),
    "file a number": (lambda m: shard(m).update(file=7), "splits.train.shards[0].file 7 is not a file name"),
    "file a list": (lambda m: shard(m).update(file=["a"]), "splits.train.shards[0].file"),
    "dtype float64": (lambda m: m["fields"]["x"].update(dtype="float64"), "fields.x.dtype is 'float64'"),
    "dtype unknown": (lambda m: m["fields"]["y"].update(dtype="int33"), "fields.y.dtype is 'int33'"),
    # the same 4 bytes read as another type: the rows would load reinterpreted
    "dtype same size": (lambda m: m["fields"]["x"].update(dtype="int32"), "fields.x.dtype is 'int32'"),
    "shape negative": (lambda m: m["fields"]["x"].update(shape=[-40]), "fields.x.shape[0] is -40"),
    "shape a string": (lambda m: m["fields"]["x"].update(shape="40"), "fields.x.shape is '40'"),
    "shape huge": (lambda m: m["fields"]["x"].update(shape=[2**40]), "fields.x.shape[0]"),
    "shape too deep": (lambda m: m["fields"]["y"].update(shape=[1, 1]), "fields.y.shape"),
    "count a string": (lambda m: m["splits"]["train"].update(count="12"), "splits.train.count is '12'"),
    "count a float": (lambda m: shard(m).update(count=4.0), "splits.train.shards[0].count is 4.0"),
    "count NaN": (lambda m: m["splits"]["test"].update(count=float("nan")), "splits.test.count is nan"),
    "counts disagree": (lambda m: m["splits"]["train"].update(count=11), "add up to 12"),
    "unknown key": (lambda m: m["splits"]["train"].update(extra=1), "splits.train has an unknown key 'extra'"),
    "x_min NaN": (lambda m: m["stats"].update(x_min=float("nan")), "stats.x_min is nan"),
    "a shard twice": (
        lambda m: m["splits"]["test"]["shards"][0].update(file=shard(m)["file"]),
        "splits.test.shards[0].file",
    ),
}


@pytest.mark.parametrize("name", DAMAGE)
def test_verify_refuses_a_damaged_manifest_naming_the_key(pack, name):
    change, needle = DAMAGE[name]
    edit(pack, change)
    line = assert_one_line_error(verify(pack), needle)
    assert "pack the dataset again" in line


def test_deep_nesting_is_one_line(pack):
    """json parses nested brackets recursively: 100,000 of them raised RecursionError."""
    text = (pack / MANIFEST).read_text().replace('"source": null', '"source": ' + "[" * 100_000 + "]" * 100_000)
    (pack / MANIFEST).write_text(text)
    assert_one_line_error(verify(pack), "nested too deeply")
    assert_one_line_error(train(pack), "nested too deeply")


@pytest.fixture
def outside(pack) -> Path:
    """A byte-identical copy of shard 0 outside the pack: read from there, every size, hash and count check
    would pass, which is why only the path can tell."""
    path = pack.parent / "outside.array_record"
    shutil.copy(pack / SHARD0, path)
    return path


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_a_shard_outside_the_pack_is_refused_by_verify_and_training(pack, outside, how):
    if how == "symlink":  # the manifest is untouched; the shard itself leads out
        (pack / SHARD0).unlink()
        os.symlink(outside, pack / SHARD0)
        needles = (SHARD0, "a link leading out of the pack")
    else:
        name = "../outside.array_record" if how == "dotdot" else str(outside)
        edit(pack, lambda m: shard(m).update(file=name))
        needles = ("splits.train.shards[0].file", "not a plain file name")
    assert_one_line_error(verify(pack), *needles)
    assert_one_line_error(train(pack), *needles)
    assert not (pack.parent / "run").exists()


def test_a_symlink_inside_the_pack_is_read(pack):
    """A shard that is a link to a file in the pack (a copy made with links) is still the pack's own."""
    os.replace(pack / SHARD0, pack / "real.array_record")
    os.symlink("real.array_record", pack / SHARD0)
    proc = verify(pack)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr
    assert load_dataset("mnist1d", pack).x_train[np.arange(12)].shape == (12, 40)


def test_a_hard_link_read_as_two_shards_is_refused(pack):
    """A test shard that is the training shard under another name: the hashes agree, the rows would leak."""
    test = pack / shard_name("test", 0, 1)
    first = json.loads((pack / MANIFEST).read_text())["splits"]["train"]["shards"][0]
    test.unlink()
    os.link(pack / SHARD0, test)
    edit(pack, lambda m: m["splits"]["test"].update(count=first["count"], shards=[first | {"file": test.name}]))
    assert_one_line_error(verify(pack), test.name, f"the same file as the shard {SHARD0}")


# Counts that passed verify before (zero, negative), or failed in training with a Grain traceback (huge).
COUNTS = {
    "zero": (lambda m: (m["splits"]["train"].update(count=0), shard(m).update(count=0)), "is 0, outside 1"),
    "negative": (lambda m: m["splits"]["test"].update(count=-3), "splits.test.count is -3, outside 1"),
    "huge split": (lambda m: m["splits"]["train"].update(count=10**6), "is 1000000, its shards' counts add up to 12"),
    "huge beyond bounds": (lambda m: shard(m).update(count=10**30), "splits.train.shards[0].count is"),
    # consistent sums, a count the shard does not hold: found in the shard's own index
    "huge, sums agree": (
        lambda m: (shard(m).update(count=10**9), m["splits"]["train"].update(count=10**9 + 8)),
        "the manifest says 1000000000",
    ),
}


@pytest.mark.parametrize("name", COUNTS)
def test_bad_counts_are_refused_by_verify_and_training(pack, name):
    change, needle = COUNTS[name]
    edit(pack, change)
    assert_one_line_error(verify(pack), needle)
    assert_one_line_error(train(pack), needle)


def test_training_refuses_rows_of_another_shape(pack):
    """The same bytes under another shape pass verify (the pack is intact) but are not MNIST-1D's rows."""
    edit(pack, lambda m: m["fields"]["x"].update(shape=[2, 20]))
    assert verify(pack).returncode == 0
    assert_one_line_error(train(pack), "(2, 20) inputs", "mnist1d has (40,)")


def test_features_that_mnist1d_has_not_are_refused(pack):
    edit(pack, lambda m: m["info"].update(features={"frontend": {}}))
    with pytest.raises(DiptychError, match="info.features is set, mnist1d has none"):
        load_dataset("mnist1d", pack)


def test_fsdd_pack_features_are_checked(tmp_path):
    """An fsdd pack's statistics feed audio augmentation and the trained weights: checked as weights' are."""
    from diptych.data.audio import FSDD_FRONTEND

    n = FSDD_FRONTEND.n_mels
    features = {"frontend": dict(FSDD_FRONTEND.__dict__), "split": "official", "mean": [0.0] * n}
    features |= {k: [1.0] * n for k in ("std", "silence", "noise_shape", "noise_bins", "floor")}
    x = np.zeros((6, n, FSDD_FRONTEND.frames), np.float32)
    y = np.arange(6, dtype=np.int32)
    pack_dataset(Dataset("fsdd", x[:4], y[:4], x[4:], y[4:], features=features), tmp_path / "p", progress=False)
    edit(tmp_path / "p", lambda m: m.update(split="official"))
    assert load_dataset("fsdd", tmp_path / "p").features["std"] == [1.0] * n
    edit(tmp_path / "p", lambda m: m["info"]["features"].update(std=[-1.0] * n))
    with pytest.raises(DiptychError, match="std that is not positive; pack the dataset again"):
        load_dataset("fsdd", tmp_path / "p")


def test_folder_pack_features_are_checked(tmp_path):
    """image-cnn sizes its model from a folder pack's front end: one that is missing is one line."""
    from diptych.data.images import load_image_folder

    features = {"frontend": {"kind": "image", "size": 8, "channels": 1}, "mean": 0.5, "std": 0.25}
    x, y = np.zeros((6, 8, 8), np.float32), np.array([0, 1] * 3, np.int32)
    data = Dataset("folder", x[:4], y[:4], x[4:], y[4:], num_classes=2, features=features, classes=["a", "b"])
    pack_dataset(data, tmp_path / "p", progress=False)
    assert load_image_folder(tmp_path / "p", 8, 1).classes == ["a", "b"]
    edit(tmp_path / "p", lambda m: m["info"].update(features=None))
    with pytest.raises(DiptychError, match="not those of a pack of images"):
        load_image_folder(tmp_path / "p", 8, 1)


def test_the_writer_writes_only_what_the_reader_reads(tmp_path):
    with pytest.raises(DiptychError, match="fields.x.dtype is 'float64'"):
        PackWriter(tmp_path / "a", "toy", {"train": 4, "test": 1}, np.zeros(3), np.int32(0))
    with pytest.raises(DiptychError, match="every split needs at least one"):
        PackWriter(tmp_path / "b", "toy", {"train": 4, "test": 0}, np.zeros(3, np.float32), np.int32(0))

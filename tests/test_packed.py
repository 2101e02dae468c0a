"""Packed datasets (ArrayRecord shards + manifest) and the Grain feed: the stream equals the in-memory
batches, training from a pack equals training from memory in both twins, and every kind of damage
ends in one line naming the bad shard."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from conftest import assert_one_line_error, cli_in_process
from diptych.commands.data import pack
from diptych.data import Batches, Dataset, load_dataset
from diptych.data.feed import MemoryFeed, make_feed
from diptych.data.packed import MANIFEST, RecordArray, is_packed, sha256_file, shard_name
from diptych.data.packing import pack_dataset
from diptych.data.stream import GrainFeed
from process_helpers import Started


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> Path:
    """MNIST-1D packed in 3 training shards (pack() as `diptych data pack mnist1d` runs it)."""
    out = tmp_path_factory.mktemp("packs") / "mnist1d"
    pack("mnist1d", out, shards=3, progress=False)
    return out


def damaged(packed: Path, tmp_path: Path) -> Path:
    """A copy of the pack to damage."""
    return Path(shutil.copytree(packed, tmp_path / "copy"))


def test_pack_round_trips_and_verifies(packed, mnist1d):
    manifest = json.loads((packed / MANIFEST).read_text())
    assert manifest["dataset"] == "mnist1d" and manifest["fields"]["x"] == {"dtype": "float32", "shape": [40]}
    assert [s["count"] for s in manifest["splits"]["train"]["shards"]] == [1333, 1333, 1334]
    data = load_dataset("mnist1d", packed)
    assert isinstance(data.x_train, RecordArray) and data.x_train.shape == mnist1d.x_train.shape
    idx = np.array([3999, 0, 1333, 2666, 7])  # across all three shards, out of order
    assert np.array_equal(data.x_train[idx], mnist1d.x_train[idx])
    assert np.array_equal(data.y_train[idx], mnist1d.y_train[idx])
    assert np.array_equal(data.x_test, mnist1d.x_test) and np.array_equal(data.y_test, mnist1d.y_test)
    assert data.x_train.min() == mnist1d.x_train.min()  # augmentation's fill value, from the manifest
    proc = cli_in_process("data", "verify", str(packed))
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr


def assert_same_stream(feed, memory: MemoryFeed, epoch: int, start: int) -> None:
    got, want = list(feed.epoch(epoch, start)), list(memory.epoch(epoch, start))
    assert len(got) == len(want) == memory.batches.steps_per_epoch() - start
    for (x, y), (xm, ym) in zip(got, want):
        assert np.array_equal(x, xm) and np.array_equal(y, ym)


@pytest.mark.parametrize("rank,world,workers", [(0, 1, 0), (1, 2, 0), (1, 2, 1)])
def test_grain_stream_equals_memory_batches(packed, mnist1d, rank, world, workers):
    """The same rows in the same order as the in-memory path: a whole epoch, the next one (the iterator
    continues), a restart mid-epoch (``start``), and a data-parallel worker's own rows (rank 1 of 2)."""
    batches = Batches(4000, 128, seed=3).shard(rank, world)
    feed = make_feed(load_dataset("mnist1d", packed), batches, workers)
    assert isinstance(feed, GrainFeed)
    memory = MemoryFeed(mnist1d, batches)
    try:
        first = 0 if workers == 0 else 29  # worker processes start once: one position in that case
        assert_same_stream(feed, memory, 0, first)
        assert_same_stream(feed, memory, 1, 0)  # the running iterator continues into the next epoch
        if workers == 0:
            assert_same_stream(feed, memory, 2, 29)  # a restart mid-epoch
        assert feed.state()["step"] == 0 and feed.state()["grain"] is not None
        assert feed.state()["epoch"] == (3 if workers == 0 else 2)
    finally:
        feed.close()
    assert isinstance(make_feed(mnist1d, batches), MemoryFeed)  # in-memory data stays in memory


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_training_from_a_pack_equals_training_from_memory(mnist1d, tmp_path, framework, float32):
    """The driver streams a pack through Grain and ends with the very weights of the in-memory run
    (a 320-row slice of MNIST-1D, one epoch: the equality, not the accuracy, is under test)."""
    from diptych import RunConfig, train_and_evaluate
    from diptych.weights import read_safetensors

    x, y = mnist1d.x_train[:320], mnist1d.y_train[:320]  # 20 steps of 16
    part = Dataset("mnist1d", x, y, mnist1d.x_test[:300], mnist1d.y_test[:300])
    pack_dataset(part, tmp_path / "pack", shards=2, progress=False)
    runs = {}
    for name, data_dir, data in (("memory", None, part), ("pack", str(tmp_path / "pack"), None)):
        config = RunConfig(
            "mnist1d-mlp", framework, 2, progress=False, data_dir=data_dir, data_workers=0, checkpoint_every=5, keep=8
        )
        record = train_and_evaluate(config, tmp_path / name, dataset=data)
        runs[name] = record, read_safetensors(tmp_path / name / "weights.safetensors")[0]
    assert runs["pack"][0]["dataset"]["train"] == 320
    assert runs["pack"][0]["test_accuracy"] == runs["memory"][0]["test_accuracy"]
    mem, pk = runs["memory"][1], runs["pack"][1]
    assert mem.keys() == pk.keys() and all(np.array_equal(mem[k], pk[k]) for k in mem)

    # Resumed from the streamed run's checkpoint at step 25 (epoch 2, step 5), the stream continues exactly.
    mid = tmp_path / "pack" / "checkpoint-step000000025.safetensors"
    with safe_open(mid, "numpy") as f:
        assert json.loads(f.metadata()["data"])["step"] == 5  # Grain's position, recorded beside (epoch, step)
    (tmp_path / "resumed").mkdir()
    shutil.copy(mid, tmp_path / "resumed" / "checkpoint.safetensors")
    config = RunConfig("mnist1d-mlp", framework, resume=True, progress=False, data_dir=str(tmp_path / "pack"))
    train_and_evaluate(config, tmp_path / "resumed")
    again = read_safetensors(tmp_path / "resumed" / "weights.safetensors")[0]
    assert all(np.array_equal(again[k], pk[k]) for k in pk)


def test_mnist_images_pack(mnist, tmp_path):
    """28x28 images (a slice of real MNIST: the format, not the size, is under test)."""
    part = Dataset("mnist", mnist.x_train[:1000], mnist.y_train[:1000], mnist.x_test[:200], mnist.y_test[:200])
    pack_dataset(part, tmp_path / "p", shards=2, progress=False)
    data = load_dataset("mnist", tmp_path / "p")
    idx = np.random.default_rng(0).permutation(1000)[:64]
    assert data.x_train[idx].shape == (64, 28, 28) and np.array_equal(data.x_train[idx], part.x_train[idx])


def train_on(folder: Path):
    return cli_in_process(
        "train",
        "mnist1d-mlp",
        "--framework",
        "torch",
        "--epochs",
        "1",
        "--data-dir",
        str(folder),
        "--out",
        str(folder.parent / "run"),
        "--no-progress",
    )


def test_wrong_checksum(packed, tmp_path):
    bad = damaged(packed, tmp_path)
    shard = bad / shard_name("train", 1, 3)
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # same size: only the SHA-256 tells
    shard.write_bytes(bytes(raw))
    assert_one_line_error(train_on(bad), shard.name, "SHA-256")
    assert_one_line_error(cli_in_process("data", "verify", str(bad)), shard.name, "SHA-256")


def test_missing_and_cut_shards(packed, tmp_path):
    bad = damaged(packed, tmp_path)
    (bad / shard_name("train", 2, 3)).unlink()
    assert_one_line_error(train_on(bad), shard_name("train", 2, 3), "missing")
    assert_one_line_error(cli_in_process("data", "verify", str(bad)), shard_name("train", 2, 3), "missing")
    shutil.copy(packed / shard_name("train", 2, 3), bad / shard_name("train", 2, 3))
    with open(bad / shard_name("train", 0, 3), "r+b") as f:  # a copy that stopped early
        f.truncate(os.path.getsize(bad / shard_name("train", 0, 3)) - 1000)
    assert_one_line_error(train_on(bad), shard_name("train", 0, 3), "truncated")


def test_truncated_record(packed, tmp_path):
    """A record shorter than the manifest's fields (a shard whose size and checksum match the manifest)."""
    from array_record.python.array_record_module import ArrayRecordReader, ArrayRecordWriter

    bad = damaged(packed, tmp_path)
    name = shard_name("train", 1, 3)
    reader = ArrayRecordReader(str(packed / name))
    records = reader.read_all()
    reader.close()
    records = [r[:-3] for r in records]  # every record of the shard: the first batch meets one
    (bad / name).unlink()
    writer = ArrayRecordWriter(str(bad / name), "group_size:1,uncompressed")
    for r in records:
        writer.write(r)
    writer.close()
    manifest = json.loads((bad / MANIFEST).read_text())
    entry = manifest["splits"]["train"]["shards"][1]
    entry["bytes"], entry["sha256"] = (bad / name).stat().st_size, sha256_file(bad / name)
    (bad / MANIFEST).write_text(json.dumps(manifest))
    assert_one_line_error(cli_in_process("data", "verify", str(bad)), name, "truncated record")
    assert_one_line_error(train_on(bad), name, "truncated record")  # met by Grain's reader, mid-training
    data = load_dataset("mnist1d", bad)  # size and checksum agree: found when the record is read
    with pytest.raises(Exception, match=f"{name}: record 1338 is"):
        data.x_train[np.array([1338])]


def test_manifest_of_another_dataset(packed, tmp_path):
    bad = damaged(packed, tmp_path)
    manifest = json.loads((bad / MANIFEST).read_text())
    (bad / MANIFEST).write_text(json.dumps(manifest | {"dataset": "fashion-mnist"}))
    assert_one_line_error(train_on(bad), "pack of 'fashion-mnist', not 'mnist1d'")


def test_killed_pack_is_not_a_dataset(packed, tmp_path):
    """A pack killed before its rename leaves only a temporary folder: --out does not exist, the next pack
    removes the leftover; shards without a manifest are refused as an unfinished pack."""
    leftover = tmp_path / ".diptych-tmp-999999999-abc.p"  # a pid that does not run
    shutil.copytree(packed, leftover)
    assert_one_line_error(train_on(tmp_path / "p"), "does not exist")
    (leftover / MANIFEST).unlink()
    assert not is_packed(leftover)
    assert_one_line_error(train_on(leftover), "no manifest.json", "unfinished")
    proc = cli_in_process("data", "pack", "mnist1d", "--out", str(tmp_path / "p"), "--no-progress")
    assert proc.returncode == 0 and is_packed(tmp_path / "p") and not leftover.exists(), proc.stderr
    assert_one_line_error(cli_in_process("data", "pack", "mnist1d", "--out", str(tmp_path / "p")), "already exists")


def test_a_pack_killed_before_its_rename_is_not_a_dataset(tmp_path):
    """A real `diptych data pack`, SIGKILLed when its temporary folder is complete (shards and manifest) but
    not yet renamed (it holds there: tests/hold): --out does not exist, and the next pack removes the
    leftover of the dead process."""
    marker, out = tmp_path / "held", tmp_path / "p"
    with Started(["data", "pack", "mnist1d", "--out", str(out), "--no-progress"], hold=(marker, "pack")) as run:
        run.wait_for(marker, timeout=120)
        run.proc.send_signal(signal.SIGKILL)
        assert run.wait(60) == -signal.SIGKILL
    leftover = Path(marker.read_text())
    assert leftover.parent == tmp_path and leftover.name.startswith(".diptych-tmp-") and (leftover / MANIFEST).exists()
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name != "held"] == [leftover.name]
    assert_one_line_error(train_on(out), "does not exist")
    proc = cli_in_process("data", "pack", "mnist1d", "--out", str(out), "--no-progress")
    assert proc.returncode == 0 and is_packed(out) and not leftover.exists(), proc.stderr


def test_image_folder_pack(tmp_path):
    """Your own images pack with their class names and statistics; image-cnn's loader reads the pack."""
    from diptych.data.images import load_image_folder
    from image_helpers import make_folder

    folder = make_folder(tmp_path / "images", per_class=4)
    proc = cli_in_process(
        "data",
        "pack",
        "folder",
        "--data-dir",
        str(folder),
        "--out",
        str(tmp_path / "p"),
        "--image-size",
        "16",
        "--no-progress",
    )
    assert proc.returncode == 0, proc.stderr
    want, got = load_image_folder(folder, 16, 1), load_image_folder(tmp_path / "p", 16, 1)
    assert got.classes == want.classes and got.features == want.features
    assert np.array_equal(got.x_train[np.arange(len(want.y_train))], want.x_train)
    assert_one_line_error(
        cli_in_process(
            "train",
            "image-cnn",
            "--framework",
            "torch",
            "--data-dir",
            str(tmp_path / "p"),
            "--image-size",
            "32",
            "--out",
            str(tmp_path / "r"),
        ),
        "packed at 16px",
    )


def test_fsdd_pack_holds_the_split_and_its_features(tmp_path):
    """`diptych data pack fsdd`: the log-mel images of a split (here a held-out speaker), the labels, and the
    feature statistics a trained model's weights carry for transcribing, the same as loading the recordings;
    training from the pack writes weights with those statistics."""
    from audio_helpers import tone_digits
    from diptych.weights import read_safetensors

    folder = tone_digits(tmp_path / "wavs", speakers=("anna", "bert"), takes=2)
    out = tmp_path / "p"
    proc = cli_in_process(
        "data", "pack", "fsdd", "--data-dir", str(folder), "--split", "speaker:bert", "--out", str(out), "--no-progress"
    )
    assert proc.returncode == 0 and "20 train records" in proc.stdout and "20 test" in proc.stdout, proc.stderr
    want, got = load_dataset("fsdd", folder, split="speaker:bert"), load_dataset("fsdd", out, split="speaker:bert")
    assert isinstance(got.x_train, RecordArray) and json.loads((out / MANIFEST).read_text())["split"] == "speaker:bert"
    rows = np.arange(len(want.y_train))
    assert np.array_equal(got.x_train[rows], want.x_train) and np.array_equal(got.y_train[rows], want.y_train)
    assert np.array_equal(got.x_test, want.x_test) and np.array_equal(got.y_test, want.y_test)
    assert json.dumps(got.features, sort_keys=True) == json.dumps(want.features, sort_keys=True)
    assert cli_in_process("data", "verify", str(out)).returncode == 0
    args = ("train", "fsdd-cnn", "--framework", "torch", "--data-dir", str(out), "--epochs", "1", "--batch-size", "10")
    # the pack is of one split: training on another (the default, official) is refused, not silently mixed
    assert_one_line_error(
        cli_in_process(*args, "--out", str(tmp_path / "other")), "packed with split 'speaker:bert', not 'official'"
    )
    run = cli_in_process(*args, "--split", "speaker:bert", "--out", str(tmp_path / "run"), "--no-progress")
    assert run.returncode == 0, run.stderr
    meta = read_safetensors(tmp_path / "run" / "weights.safetensors")[1]
    assert json.dumps(meta["features"], sort_keys=True) == json.dumps(want.features, sort_keys=True)
    # a task that reads its recordings with a front end of its own does not train on the default one's images
    unheard = ("train", "fsdd-cnn-unheard", "--framework", "jax", "--data-dir", str(out), "--split", "speaker:bert")
    assert_one_line_error(cli_in_process(*unheard, "--out", str(tmp_path / "u")), "pass the folder of recordings")


def test_data_workers_train_on_the_very_batches_of_memory(packed, mnist1d, tmp_path, monkeypatch):
    """--data-workers 2 in a real run: Grain reads the pack in two background processes, and the run ends
    with the weights of the same run from memory, bit for bit (the same batches in the same order)."""
    from diptych.data import stream
    from diptych.weights import read_safetensors

    workers = []
    real_init = stream.GrainFeed.__init__

    def init(self, *args, **kwargs):  # records what the driver asked for, and builds the real feed
        real_init(self, *args, **kwargs)
        workers.append(self.workers)

    monkeypatch.setattr(stream.GrainFeed, "__init__", init)
    weights = {}
    for name, extra in (("pack", ["--data-dir", str(packed), "--data-workers", "2"]), ("memory", [])):
        proc = cli_in_process(
            *("train", "mnist1d-mlp", "--framework", "torch", "--epochs", "0.2", *extra),
            *("--out", str(tmp_path / name), "--no-progress"),
        )
        assert proc.returncode == 0, proc.stderr
        weights[name] = read_safetensors(tmp_path / name / "weights.safetensors")[0]
    assert workers == [2]  # the pack run streamed through two workers; the memory run needs none
    assert weights["pack"].keys() == weights["memory"].keys()
    assert all(np.array_equal(weights["pack"][k], weights["memory"][k]) for k in weights["memory"])

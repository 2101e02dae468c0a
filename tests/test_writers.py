"""Every file a command writes goes through the one atomic writer (:mod:`diptych.fsio`): the torch ``.pt`` of
``convert``, ONNX exports, pack shards, the decoded-image cache. A symlink planted at any name a command writes,
its temporary names included, is replaced or passed by, never written through; and the files get a normal file's
mode (``0o666 & ~umask``), as any other tool's. (A full disk for each: tests/test_disk_full.py.)"""

from __future__ import annotations

import itertools
import os
import stat
import tempfile
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_one_line_error, cli_in_process
from diptych import fsio
from diptych.formats import read_any
from diptych.tasks import TASKS
from diptych.weights import save_weights
from image_helpers import make_folder

TASK = "mnist1d-mlp"


def _weights(path: Path) -> Path:
    rng = np.random.default_rng(0)
    save_weights(
        {k: rng.normal(0, 0.1, s).astype(np.float32) for k, s in TASKS[TASK].model.param_shapes().items()},
        path,
        task=TASK,
    )
    return path


@pytest.fixture
def victim(tmp_path) -> Path:
    v = tmp_path / "victim.bin"
    v.write_bytes(b"precious")
    return v


@pytest.fixture
def guessed_temp_names(monkeypatch):
    """Every temporary name drawn first is ``<temp_prefix()>guessed<suffix>``: a test can plant a link there."""
    monkeypatch.setattr(
        tempfile, "_get_candidate_names", lambda: itertools.chain(["guessed"], tempfile._RandomNameSequence())
    )
    return lambda folder, suffix: Path(folder) / f"{fsio.temp_prefix()}guessed{suffix}"


@pytest.mark.parametrize("suffix", [".pt", ".msgpack", ".safetensors"])
def test_convert_replaces_planted_symlinks(tmp_path, victim, guessed_temp_names, suffix):
    src = _weights(tmp_path / "w.safetensors")
    dst = tmp_path / f"out{suffix}"
    dst.symlink_to(victim)
    temp = guessed_temp_names(tmp_path, f".{dst.name}")
    temp.symlink_to(victim)
    proc = cli_in_process("convert", str(src), str(dst))
    assert proc.returncode == 0, proc.stderr
    assert victim.read_bytes() == b"precious" and not dst.is_symlink() and temp.is_symlink()
    got, want = read_any(dst)[0], read_any(src)[0]
    assert all(np.array_equal(got[k], want[k]) for k in want)


def test_export_has_no_fixed_temporary_name_to_plant_a_link_at(tmp_path, victim, guessed_temp_names):
    """`m.onnx.partial` was a fixed temporary name: a link planted there had its target overwritten (and then
    renamed onto m.onnx). Now the ONNX bytes are verified in memory and written by the atomic writer."""
    pytest.importorskip("onnxruntime")
    out = tmp_path / "m.onnx"
    for name in ("m.onnx", "m.onnx.partial"):
        (tmp_path / name).symlink_to(victim)
    guessed_temp_names(tmp_path, ".m.onnx").symlink_to(victim)
    w = _weights(tmp_path / "w.safetensors")
    proc = cli_in_process("export", TASK, "--weights", str(w), "--onnx", str(out))
    assert proc.returncode == 0, proc.stderr
    assert victim.read_bytes() == b"precious" and out.is_file() and not out.is_symlink()
    import onnxruntime as ort

    sess = ort.InferenceSession(str(out))
    assert sess.run(None, {"x": np.zeros((3, 40), np.float32)})[0].shape == (3, 10)


def test_the_image_cache_replaces_planted_symlinks(tmp_path, victim, monkeypatch):
    """A link at the cache entry (or at the fixed temporary name the cache used) is not written through."""
    from diptych.data.images import _key, find_splits, load_image_folder

    monkeypatch.setenv("DIPTYCH_CACHE", str(tmp_path / "cache"))
    root = make_folder(tmp_path / "imgs", per_class=4)
    _, splits = find_splits(root, 0.2, 0)
    entry = tmp_path / "cache" / "images" / f"{_key([f for s in ('train', 'test') for f, _ in splits[s]], 16, 1)}.npy"
    entry.parent.mkdir(parents=True)
    entry.symlink_to(victim)
    entry.with_suffix(f".{os.getpid()}.tmp.npy").symlink_to(victim)
    data = load_image_folder(root, 16, 1)
    assert victim.read_bytes() == b"precious" and not entry.is_symlink()
    assert np.load(entry).shape == (len(data.y_train) + len(data.y_test), 16, 16)


def test_pack_writes_through_no_planted_link(tmp_path, victim, guessed_temp_names):
    (tmp_path / "empty").mkdir()
    (tmp_path / "p").symlink_to(tmp_path / "empty")  # --out a link to an empty folder: refused, not followed
    assert_one_line_error(
        cli_in_process("data", "pack", "mnist1d", "--out", str(tmp_path / "p"), "--no-progress"), "symbolic link"
    )
    assert list((tmp_path / "empty").iterdir()) == []
    (tmp_path / "p").unlink()
    planted = guessed_temp_names(tmp_path, ".p")  # the temporary folder's first name
    planted.symlink_to(tmp_path / "empty")
    proc = cli_in_process("data", "pack", "mnist1d", "--out", str(tmp_path / "p"), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert (
        list((tmp_path / "empty").iterdir()) == []
        and planted.is_symlink()
        and (tmp_path / "p" / "manifest.json").is_file()
    )


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_command_outputs_get_a_normal_files_mode(tmp_path, umask):
    """mkstemp makes 0600 files; pack shards were 0644 whatever the umask. Every output is 0o666 & ~umask."""
    src = _weights(tmp_path / "w.safetensors")
    old = os.umask(umask)
    try:
        outputs = []
        for suffix in (".pt", ".msgpack", ".safetensors"):
            proc = cli_in_process("convert", str(src), str(tmp_path / f"c{suffix}"))
            assert proc.returncode == 0, proc.stderr
            outputs.append(tmp_path / f"c{suffix}")
        proc = cli_in_process("data", "pack", "mnist1d", "--out", str(tmp_path / "p"), "--shards", "2", "--no-progress")
        assert proc.returncode == 0, proc.stderr
        outputs += sorted((tmp_path / "p").iterdir())
    finally:
        os.umask(old)
    assert len(outputs) == 3 + 4  # two training shards, one test shard, the manifest
    modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in outputs}
    assert set(modes.values()) == {oct(0o666 & ~umask)}, modes
    assert stat.S_IMODE((tmp_path / "p").stat().st_mode) == 0o777 & ~umask


@pytest.mark.parametrize("planted", ["dangling", "victim"])
def test_a_link_planted_at_a_kept_checkpoints_name_is_replaced(tmp_path, victim, mnist1d, planted):
    """--keep hard-links the previous checkpoint under its step; a link planted at that name was followed
    (its target taken for a checkpoint) or, dangling, ended the run in a FileExistsError traceback."""
    from diptych import RunConfig, train_and_evaluate

    steps = len(mnist1d.y_train) // 16  # one epoch of batch 16: epoch 2's save keeps epoch 1's as this step
    kept = tmp_path / f"checkpoint-step{steps:09d}.safetensors"
    kept.symlink_to(victim if planted == "victim" else tmp_path / "nothing")
    config = RunConfig("mnist1d-mlp", "torch", epochs=2, keep=2, checkpoint_every=0, progress=False)
    train_and_evaluate(config, tmp_path, dataset=mnist1d)
    assert victim.read_bytes() == b"precious" and not kept.is_symlink()
    assert kept.stat().st_nlink == 1  # epoch 1's file, now only under its step
    from safetensors import safe_open

    with safe_open(kept, framework="numpy") as f:
        assert int(f.metadata()["global_step"]) == steps


def test_a_plot_in_an_unknown_format_is_one_line_and_writes_nothing(tmp_path):
    """matplotlib's ValueError for an unknown suffix was a traceback; plots now go through the atomic writer."""
    root = make_folder(tmp_path / "imgs", per_class=4)
    proc = cli_in_process("augment-preview", "image-cnn", "--data-dir", str(root), "--out", str(tmp_path / "a.xyz"))
    assert_one_line_error(proc, "a.xyz: no image format 'xyz'", ".png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs"]
    proc = cli_in_process("augment-preview", "image-cnn", "--data-dir", str(root), "--out", str(tmp_path / "grid"))
    assert proc.returncode == 0 and (tmp_path / "grid").read_bytes().startswith(b"\x89PNG"), proc.stderr

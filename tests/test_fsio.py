"""The atomic writer and the output-folder check: no write through a planted symlink, nothing left
behind on error, one line on a full or read-only disk with the previous file intact."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import psutil
import pytest

from diptych import fsio
from diptych.cli import main
from diptych.errors import DiptychError
from diptych.fsio import TEMP_PREFIX, atomic_write, clean_stale_temps, ensure_writable_dir
from diptych.records import write_json
from diptych.weights import save_weights
from disk_helpers import temps, tmpfs


def test_writes_bytes_text_and_through_a_writer(tmp_path):
    atomic_write(tmp_path / "a.bin", b"\x00\x01")
    atomic_write(tmp_path / "b.txt", "héllo")
    atomic_write(tmp_path / "sub" / "c.npy", lambda t: np.save(t, np.arange(3)))  # np.save adds no suffix
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "b.txt").read_text() == "héllo"
    assert np.load(tmp_path / "sub" / "c.npy").tolist() == [0, 1, 2]
    assert temps(tmp_path) == [] and temps(tmp_path / "sub") == []


@pytest.mark.parametrize("planted", ["run.json", "run.json.tmp"])
def test_a_planted_symlink_is_replaced_not_followed(tmp_path, planted):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / planted).symlink_to(victim)
    write_json(tmp_path / "run.json", {"task": "x"})
    assert victim.read_text() == "precious"
    assert not (tmp_path / "run.json").is_symlink() and '"task": "x"' in (tmp_path / "run.json").read_text()


def test_weights_written_over_a_symlink_leave_its_target(tmp_path):
    victim = tmp_path / "victim.bin"
    victim.write_bytes(b"keep")
    (tmp_path / "weights.safetensors").symlink_to(victim)
    save_weights({"w": np.ones(2, np.float32)}, tmp_path / "weights.safetensors", task="t")
    assert victim.read_bytes() == b"keep" and not (tmp_path / "weights.safetensors").is_symlink()


def test_a_failing_writer_leaves_the_old_file_and_no_temp(tmp_path):
    (tmp_path / "f.npy").write_bytes(b"old")

    def boom(tmp):
        Path(tmp).write_bytes(b"half")
        raise RuntimeError("writer crashed")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "f.npy", boom)
    assert (tmp_path / "f.npy").read_bytes() == b"old" and temps(tmp_path) == []


def test_writing_onto_a_folder_is_one_line(tmp_path):
    (tmp_path / "run.json").mkdir()
    with pytest.raises(DiptychError, match="cannot write .*run.json: it is a folder"):
        write_json(tmp_path / "run.json", {})
    assert temps(tmp_path) == []


def _temp(folder: Path, pid: int, token: str | None, name: str = "run.json") -> Path:
    path = folder / (f"{TEMP_PREFIX}{pid}-" + (f"{token}-" if token else "") + f"abc123._{name}")
    path.write_text("x")
    return path


def test_stale_temps_are_told_by_pid_and_token_not_by_clocks(tmp_path):
    """A temp of a dead pid is stale however new it is (a `kill -9` and an immediate --resume); one named with
    this process's pid but another token is a former process's with the same pid; a live writer's stays."""
    dead = 2**22 + 12345  # above the kernel's default pid_max: never a running process
    stale = [
        _temp(tmp_path, dead, "0badc0de"),  # written a moment ago: psutil's start time of this process is ~1 s early
        _temp(tmp_path, dead, None),  # an older name, without a token
        _temp(tmp_path, os.getpid(), "0badc0de" if fsio.TOKEN != "0badc0de" else "1badc0de"),
        _temp(tmp_path, os.getpid(), None),
    ]
    kept = [
        _temp(tmp_path, os.getpid(), fsio.TOKEN),  # this process's own, being written
        _temp(tmp_path, 1, "0badc0de"),  # pid 1 runs and started before the file was written: a live writer
        _temp(tmp_path, 1, None),
        tmp_path / "notes.tmp",
        tmp_path / f"{TEMP_PREFIX}x-y.run.json",  # not a name diptych writes
    ]
    for p in kept[-2:]:
        p.write_text("x")
    assert sorted(clean_stale_temps(tmp_path)) == sorted(stale)
    assert sorted(tmp_path.iterdir()) == sorted(kept)


def test_a_temp_of_a_reused_pid_is_stale(tmp_path):
    """Pid 1 runs, but started (at boot) long after this file was last written: not its writer."""
    boot = psutil.Process(1).create_time()
    old = _temp(tmp_path, 1, "0badc0de")
    os.utime(old, (boot - 3600, boot - 3600))
    assert clean_stale_temps(tmp_path) == [old]


WRITER = """
import sys, time
from diptych.fsio import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    open(tmp, "w").write("half")
    print(tmp, flush=True)
    time.sleep(600)
"""


def test_a_killed_writers_temp_is_removed_at_once_and_a_live_ones_kept(tmp_path):
    """A real writer: while it runs its temp stays; `kill -9` it and the very next clean removes the temp."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path / "checkpoint.safetensors")], stdout=subprocess.PIPE, env=env
    )
    try:
        tmp = Path(proc.stdout.readline().decode().strip())
        assert tmp.parent == tmp_path and tmp.name.startswith(f"{TEMP_PREFIX}{proc.pid}-")
        assert clean_stale_temps(tmp_path) == [] and tmp.exists()
    finally:
        proc.kill()
        proc.wait()
    assert clean_stale_temps(tmp_path) == [tmp] and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_get_a_normal_files_mode(tmp_path, umask):
    """Not mkstemp's 0600 whatever the umask: 0o666 & ~umask, as a file any other tool creates."""
    old = os.umask(umask)
    try:
        atomic_write(tmp_path / "a.json", "{}")
        save_weights({"w": np.ones(2, np.float32)}, tmp_path / "w.safetensors", task="t")
        atomic_write(tmp_path / "b.npy", lambda t: np.save(t, np.arange(3)))
        (tmp_path / "plain.txt").write_text("x")  # what any tool gets
    finally:
        os.umask(old)
    want = 0o666 & ~umask
    assert stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == want
    for name in ("a.json", "w.safetensors", "b.npy"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == want, name


def test_a_symlink_planted_at_the_temporary_name_is_not_written_through(tmp_path, monkeypatch):
    """The temporary name is random; planted at the one drawn (the draw made predictable here), the link is
    left alone (O_EXCL: another name is drawn) and its target unchanged."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    planted = tmp_path / f"{fsio.temp_prefix()}guessed.run.json"
    planted.symlink_to(victim)
    monkeypatch.setattr(tempfile, "_get_candidate_names", lambda: iter(["guessed", "another"]))
    write_json(tmp_path / "run.json", {"task": "x"})
    assert victim.read_text() == "precious" and planted.is_symlink()
    assert '"task": "x"' in (tmp_path / "run.json").read_text() and not (tmp_path / "run.json").is_symlink()


def test_ensure_writable_dir_refuses_files_and_creates_nothing(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(DiptychError, match="is a file, not a folder"):
        ensure_writable_dir(tmp_path / "file")
    with pytest.raises(DiptychError, match="is not a folder"):
        ensure_writable_dir(tmp_path / "file" / "run")
    assert ensure_writable_dir(tmp_path / "new" / "run") == tmp_path / "new" / "run"
    assert not (tmp_path / "new").exists() and sorted(os.listdir(tmp_path)) == ["file"]


@pytest.mark.parametrize("out", ["file", "file/run"])
def test_train_refuses_a_bad_out_before_training(tmp_path, capsys, monkeypatch, out):
    (tmp_path / "file").write_text("x")

    def no_work(*args, **kwargs):
        raise AssertionError("a framework was loaded before --out was checked")

    monkeypatch.setattr("diptych.driver.load_backend", no_work)  # refused before any data or model is loaded
    assert main(["train", "mnist1d-mlp", "--framework", "torch", "--out", str(tmp_path / out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ("not a folder" in err[0] or "is a file" in err[0]), err


# ----------------------------------------------------------------------------- real full / read-only disks


def test_full_disk_is_one_line_and_keeps_the_previous_file(tmp_path):
    with tmpfs(tmp_path / "disk", "64k") as disk:
        save_weights({"w": np.ones(8, np.float32)}, disk / "weights.safetensors", task="t")
        before = (disk / "weights.safetensors").read_bytes()
        with pytest.raises(
            DiptychError,
            match=r"weights.safetensors: the disk is full; the previous "
            r"weights.safetensors is intact",
        ):
            save_weights({"w": np.ones(100_000, np.float32)}, disk / "weights.safetensors", task="t")
        with pytest.raises(DiptychError, match="run.json: the disk is full; nothing was written"):
            write_json(disk / "run.json", {"x": "y" * 200_000})
        assert (disk / "weights.safetensors").read_bytes() == before
        assert temps(disk) == [] and sorted(os.listdir(disk)) == ["weights.safetensors"]


def test_read_only_out_is_refused_in_one_line(tmp_path, capsys):
    with tmpfs(tmp_path / "ro", "64k", readonly=True) as ro:
        with pytest.raises(DiptychError, match="read-only"):
            write_json(ro / "run.json", {})
        assert main(["train", "mnist1d-mlp", "--framework", "jax", "--out", str(ro / "run")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "is not writable (the file system is read-only)" in err[0], err

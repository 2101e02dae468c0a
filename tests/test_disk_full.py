"""A disk that fills up (a real, small tmpfs). During training: the run stops in one line at the checkpoint it
cannot write, the previous checkpoint is intact, nothing is left behind, and once there is room again
``--resume`` finishes the run. And every other command that writes (convert, data pack, export, the image
cache of an image-folder run): one line, exit 2, nothing half-written left."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_one_line_error, cli_in_process
from diptych import checkpoint
from diptych.cli import main
from diptych.tasks import TASKS
from diptych.weights import save_weights
from disk_helpers import temps, tmpfs
from image_helpers import make_folder


def test_a_full_disk_at_a_checkpoint_stops_cleanly_and_resumes(tmp_path, capsys, mnist1d):
    # mnist1d-mlp: a checkpoint is ~186 KB (weights + two Adam moments). 300 KB holds one, not the
    # temporary file of the next beside it, so epoch 2's checkpoint finds the disk full.
    with tmpfs(tmp_path / "disk", "300k") as disk:
        argv = [
            "train",
            "mnist1d-mlp",
            "--framework",
            "torch",
            "--epochs",
            "3",  # epoch 2's checkpoint is not the last: the final weights (written first) are not involved
            "--batch-size",
            "1000",
            "--no-progress",
            "--out",
            str(disk),
        ]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert (
            len(err) == 1
            and "checkpoint.safetensors: the disk is full; the previous checkpoint.safetensors is intact" in err[0]
        ), err
        _, _, meta = checkpoint.load(disk / checkpoint.FILENAME, "mnist1d-mlp")  # valid, and from epoch 1
        assert (
            meta["epoch"] == 1
            and temps(disk) == []
            and sorted(os.listdir(disk)) == [checkpoint.FILENAME, "metrics.jsonl"]
        )

        subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)  # room again
        assert main([*argv, "--resume"]) == 0, capsys.readouterr().err
        run = json.loads((disk / "run.json").read_text())
        assert [e["epoch"] for e in run["epochs"]] == [1, 2, 3] and (disk / "weights.safetensors").is_file()
        assert temps(disk) == []


# ----------------------------------------------------------------------------- every other command that writes


def _files(folder: Path) -> list[str]:
    """Every file left under ``folder`` (a half-written one, a temporary one), relative names."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir())


def _mlp_weights(path: Path) -> Path:
    rng = np.random.default_rng(0)
    shapes = TASKS["mnist1d-mlp"].model.param_shapes()  # ~61 KB of float32
    save_weights({k: rng.normal(0, 0.1, s).astype(np.float32) for k, s in shapes.items()}, path, task="mnist1d-mlp")
    return path


@pytest.mark.parametrize("suffix", [".pt", ".msgpack", ".safetensors"])
def test_convert_onto_a_full_disk_is_one_line(tmp_path, suffix):
    """torch.save's own zip writer failed with "[enforce fail at inline_container.cc] unexpected pos": a
    traceback, before the .pt went through the atomic writer."""
    src = _mlp_weights(tmp_path / "w.safetensors")
    with tmpfs(tmp_path / "disk", "32k") as disk:
        proc = cli_in_process("convert", str(src), str(disk / f"w{suffix}"))
        assert_one_line_error(proc, f"w{suffix}: the disk is full; nothing was written")
        assert _files(disk) == []


def test_pack_onto_a_full_disk_is_one_line(tmp_path):
    with tmpfs(tmp_path / "disk", "256k") as disk:  # MNIST-1D's shards are ~800 KB
        proc = cli_in_process("data", "pack", "mnist1d", "--out", str(disk / "p"), "--no-progress")
        assert_one_line_error(proc, "the disk is full", "free some space")
        assert _files(disk) == [] and list(disk.iterdir()) == []  # the temporary folder is gone


def test_export_onto_a_full_disk_is_one_line(tmp_path):
    pytest.importorskip("onnxruntime")
    w = _mlp_weights(tmp_path / "w.safetensors")
    with tmpfs(tmp_path / "disk", "32k") as disk:
        proc = cli_in_process("export", "mnist1d-mlp", "--weights", str(w), "--onnx", str(disk / "m.onnx"))
        assert_one_line_error(proc, "m.onnx: the disk is full; nothing was written")
        assert _files(disk) == []


def test_an_image_folder_run_with_a_full_cache_disk_is_one_line(tmp_path, monkeypatch):
    """The decoded-image cache wrote `<key>.<pid>.tmp.npy` with np.save: a traceback, and the half-written
    file stayed."""
    root = make_folder(tmp_path / "imgs", per_class=8)  # 24 images, 32 px: a ~100 KB cache entry
    with tmpfs(tmp_path / "disk", "32k") as disk:
        monkeypatch.setenv("DIPTYCH_CACHE", str(disk))
        proc = cli_in_process(
            "train",
            "image-cnn",
            "--framework",
            "torch",
            "--data-dir",
            str(root),
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "run"),
            "--no-progress",
        )
        assert_one_line_error(proc, "the disk is full; nothing was written", "DIPTYCH_CACHE")
        assert _files(disk) == []


@pytest.fixture(scope="module", autouse=True)
def _root_only():
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; run the suite as root (as CI does) to test a full disk")

"""A disk that fills up during training (a real, small tmpfs): the run stops in one line at the
checkpoint it cannot write, the previous checkpoint is intact, nothing is left behind, and once there
is room again ``--resume`` finishes the run."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from diptych import checkpoint
from diptych.cli import main
from disk_helpers import temps, tmpfs


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


@pytest.fixture(scope="module", autouse=True)
def _root_only():
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; run the suite as root (as CI does) to test a full disk")

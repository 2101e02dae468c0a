"""Resume after a real interruption: SIGKILL a training process after a checkpoint, resume it,
and get the same weights as a run that was never interrupted."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file

from conftest import run_cli

ARGS = ["mnist1d-mlp", "--epochs", "16", "--batch-size", "32", "--no-progress"]


def _checkpoint_epoch(path):
    try:
        with safe_open(path, framework="numpy") as f:
            return json.loads(f.metadata()["epoch"])
    except Exception:  # not written yet
        return 0


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_kill_and_resume_matches_uninterrupted(tmp_path, framework):
    full = run_cli("train", *ARGS, "--framework", framework, "--out", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr

    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "diptych", "train", *ARGS, "--framework", framework,
                             "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=os.environ.copy())
    deadline = time.time() + 300
    while _checkpoint_epoch(out / "checkpoint.safetensors") < 3 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = _checkpoint_epoch(out / "checkpoint.safetensors")
    assert 3 <= killed_at < 16 and not (out / "run.json").exists()

    resumed = run_cli("train", "mnist1d-mlp", "--framework", framework, "--resume", "--out", str(out),
                      "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    a, b = load_file(tmp_path / "full" / "weights.safetensors"), load_file(out / "weights.safetensors")
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=0, atol=1e-6, err_msg=k)
    run = json.loads((out / "run.json").read_text())
    assert [e["epoch"] for e in run["epochs"]] == list(range(1, 17))
    full_run = json.loads((tmp_path / "full" / "run.json").read_text())
    assert abs(run["test_accuracy"] - full_run["test_accuracy"]) < 1e-9

"""`diptych train --shard fsdp` end to end: a killed worker ends a sharded run in one line with an intact
checkpoint; the checkpoint is canonical, so `--resume` continues it with another number of workers (2
sharded -> 1, and 1 -> 2 sharded) to the weights of an unbroken sharded run; run.json records the bytes
each worker held. Bad uses of --shard are one line."""

import json

import numpy as np
import psutil
import pytest
from safetensors.numpy import load_file

from conftest import assert_one_line_error, cli_in_process, free_port, run_cli_isolated
from diptych import checkpoint
from diptych.errors import DiptychError
from distributed.test_cli import _worker
from process_helpers import Started

# mnist1d-mlp (every layer's width even, so JAX shards every parameter) at batch 16: 100 steps, a checkpoint
# every 10; the lead holds before its checkpoint at step 60, with step 50 on disk (tests/hold).
TASK = "mnist1d-mlp"
ARGS = ["--epochs", "0.4", "--checkpoint-every", "10", "--no-progress"]
HOLD = 60


def _position(path) -> tuple[int, int]:
    """``(epoch, step)`` of the checkpoint at ``path`` (it loads: intact)."""
    meta = checkpoint.load(path, TASK)[2]
    return meta["epoch"], meta["step"]


def _train(framework: str, out, *extra: str, nproc: int = 2):
    sharded = ["--nproc", str(nproc), "--shard", "fsdp", "--port", str(free_port())] if nproc > 1 else []
    return ["train", TASK, "--framework", framework, *ARGS, *sharded, *extra, "--out", str(out)]


def _close(a, b, bound: float = 1e-4) -> None:
    """Weights of runs that differ only in how the gradient sums were split (and so rounded)."""
    a, b = load_file(a / "weights.safetensors"), load_file(b / "weights.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        rel = np.abs(a[k] - b[k]).max() / np.abs(a[k]).max()
        assert rel <= bound, (k, rel)


def _memory(out) -> dict:
    run = json.loads((out / "run.json").read_text())
    assert [e["epoch"] for e in run["epochs"]] == [1]
    return run["world"] | run["memory"]


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory, mnist1d):
    """Per framework, the sharded run on 2 workers that was never stopped (run once)."""
    done = {}

    def get(framework):
        if framework not in done:
            out = tmp_path_factory.mktemp(f"unbroken-{framework}")
            r = run_cli_isolated(*_train(framework, out))
            assert r.returncode == 0, r.stderr
            done[framework] = out
        return done[framework]

    return get


@pytest.mark.full
@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_killed_sharded_worker_is_one_line_and_one_worker_resumes(framework, tmp_path, unbroken):
    full = unbroken(framework)
    seen = _memory(full)
    assert seen["shard"] == "fsdp" and seen["processes"] == 2
    for kind in ("param", "opt"):  # each worker held about half of the parameters and of Adam's moments
        total, each = seen[f"{kind}_bytes_total"], seen[f"{kind}_bytes_local"]
        assert len(each) == 2 and all(0.45 * total <= b <= 0.55 * total for b in each), (kind, each, total)

    out, marker = tmp_path / "run", tmp_path / "held"
    with Started(_train(framework, out), hold=(marker, HOLD)) as launcher:
        launcher.wait_for(marker, timeout=240)
        victim = _worker(psutil.Process(launcher.proc.pid), framework, rank=1)
        assert victim is not None, "no worker of rank 1 under the launcher"
        victim.kill()
        code = launcher.wait(60)  # no hang: the launcher stops the survivor within a minute
        stderr = launcher.stderr()
    assert code == 2, stderr
    last = stderr.strip().splitlines()[-1]
    assert "worker 1 of 2 was killed by SIGKILL" in last and "--resume" in last and "Traceback" not in stderr
    assert _position(out / "checkpoint.safetensors") == (0, 50) and not (out / "run.json").exists()

    resumed = run_cli_isolated(*_train(framework, out, "--resume", nproc=1))  # the canonical checkpoint, 1 worker
    assert resumed.returncode == 0, resumed.stderr
    mine = _memory(out)
    assert mine["processes"] == 1 and mine["shard"] == "none"
    assert mine["param_bytes_device"] == [mine["param_bytes_total"]]  # replicated: each device holds it all
    _close(full, out)


@pytest.mark.full
@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_one_worker_killed_and_two_sharded_workers_resume(framework, tmp_path, unbroken):
    out, marker = tmp_path / "run", tmp_path / "held"
    env = {"JAX_NUM_CPU_DEVICES": "1"}  # one process, one device: the 1-worker reference of the equivalence
    with Started(_train(framework, out, nproc=1), env=env, hold=(marker, HOLD)) as run:
        run.wait_for(marker, timeout=240)
    assert _position(out / "checkpoint.safetensors") == (0, 50)

    resumed = run_cli_isolated(*_train(framework, out, "--resume"))  # 2 workers, sharded
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.count("test accuracy") == 1  # the lead reports, once
    mine = _memory(out)
    assert mine["shard"] == "fsdp" and len(mine["param_bytes_local"]) == 2
    assert max(mine["param_bytes_local"]) <= 0.55 * mine["param_bytes_total"]
    _close(unbroken(framework), out)


def test_shard_without_workers_or_unknown_is_one_line(tmp_path, mnist1d):
    pytest.importorskip("torch")
    base = ["train", TASK, "--epochs", "0.05", "--no-progress", "--out", str(tmp_path)]
    r = cli_in_process(*base, "--framework", "torch", "--shard", "fsdp")
    assert_one_line_error(r, "--shard fsdp", "has 1", "--nproc N")
    assert_one_line_error(cli_in_process(*base, "--framework", "torch", "--shard", "zero3"), "--shard", "fsdp")


def test_jax_shard_over_one_device_is_refused():
    """A prime batch above the CPU device count runs on the one device that divides it: nothing to shard."""
    jax = pytest.importorskip("jax")
    from diptych.backends import load_backend

    n = len(jax.devices("cpu"))
    prime = next(p for p in range(n + 1, 2 * n + 3) if p > 1 and all(p % d for d in range(2, p)))
    with pytest.raises(DiptychError, match=r"--shard fsdp .* has 1; add --nproc N"):
        load_backend("jax").distributed.init("cpu", prime, shard="fsdp")

"""`diptych train --nproc N` end to end: world size recorded, a worker killed mid-epoch ends the run in
one line with an intact checkpoint and `--resume` finishes it with the weights of an uninterrupted run,
bit for bit, and launch-time errors and warnings."""

import json
import socket

import numpy as np
import psutil
import pytest
from safetensors.numpy import load_file

from conftest import free_port, run_cli_isolated
from diptych import checkpoint
from diptych.errors import DiptychError
from diptych.launch import usable_cores
from process_helpers import Started

pytestmark = pytest.mark.full  # the full tier: data-parallel runs of real worker processes (minutes)

# mnist1d-cnn at batch 100: 40 steps an epoch, a checkpoint every 10 (2 workers: ~0.25 s/epoch torch, ~1 s JAX).
EPOCHS = {"torch": 6, "jax": 3}
RANK_ENV = {"torch": "RANK", "jax": "JAX_PROCESS_ID"}


def _position(path) -> tuple[int, int]:
    """``(epoch, step)`` of the checkpoint at ``path``: finished epochs, steps into the next; (0, 0) if none."""
    try:
        meta = checkpoint.load(path, "mnist1d-cnn")[2]
        return meta["epoch"], meta["step"]
    except DiptychError:  # not written yet
        return 0, 0


def _worker(launcher: psutil.Process, framework: str, rank: int) -> psutil.Process | None:
    for child in launcher.children(recursive=True):
        try:
            if child.environ().get(RANK_ENV[framework]) == str(rank):
                return child
        except psutil.Error:
            pass
    return None


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_killed_worker_stops_the_run_and_resume_finishes_it(framework, tmp_path, mnist1d):
    out = tmp_path / "run"
    args = [
        "train",
        "mnist1d-cnn",
        "--framework",
        framework,
        "--nproc",
        "2",
        "--port",
        str(free_port()),
        "--epochs",
        str(EPOCHS[framework]),
        "--checkpoint-every",
        "10",
        "--no-progress",
    ]
    full = run_cli_isolated(*args, "--out", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr
    args += ["--out", str(out)]
    # The lead holds before writing its checkpoint at (1, 20), with (1, 10) on disk (tests/hold): the run is
    # then mid-epoch, past a checkpoint, and cannot end before worker 1 is killed.
    marker = tmp_path / "held"
    with Started(args, hold=(marker, 40 + 20)) as launcher:
        launcher.wait_for(marker, timeout=180)
        victim = _worker(psutil.Process(launcher.proc.pid), framework, rank=1)
        assert victim is not None, "no worker of rank 1 under the launcher"
        victim.kill()
        code = launcher.wait(60)  # no hang: the launcher stops the survivors within a minute
        stderr = launcher.stderr()
    assert code == 2, stderr
    last = stderr.strip().splitlines()[-1]
    assert "worker 1 of 2 was killed by SIGKILL" in last and "--resume" in last and "Traceback" not in stderr
    epoch, step = _position(out / "checkpoint.safetensors")  # intact: it loads
    assert (epoch, step) == (1, 10) and int(marker.read_text()) == 50 and not (out / "run.json").exists()

    resumed = run_cli_isolated(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    run = json.loads((out / "run.json").read_text())
    assert [e["epoch"] for e in run["epochs"]] == list(range(1, EPOCHS[framework] + 1))
    assert run["world"]["processes"] == 2 and run["world"]["devices"] == 2
    assert resumed.stdout.count("test accuracy") == 1  # the lead reports, once
    a, b = load_file(tmp_path / "full" / "weights.safetensors"), load_file(out / "weights.safetensors")
    assert all(a[k].tobytes() == b[k].tobytes() for k in a)  # bit for bit


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_port_in_use_and_oversubscription(framework, tmp_path):
    too_many = usable_cores() + 1
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = run_cli_isolated(
            "train",
            "mnist1d-cnn",
            "--framework",
            framework,
            "--nproc",
            str(too_many),
            "--port",
            str(port),
            "--batch-size",
            str(10 * too_many),
            "--out",
            str(tmp_path),
            timeout=120,
        )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"warning: --nproc {too_many} is more than the" in " ".join(r.stderr.split())
    assert f"coordinator port {port} on 127.0.0.1 is already in use" in r.stderr and "--port" in r.stderr
    assert not (tmp_path / "checkpoint.safetensors").exists()


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_device_gpu_without_a_gpu_is_one_line(framework, tmp_path):
    r = run_cli_isolated(
        "train",
        "mnist1d-cnn",
        "--framework",
        framework,
        "--device",
        "gpu",
        "--epochs",
        "1",
        "--out",
        str(tmp_path),
        "--no-progress",
    )
    if r.returncode == 0:  # a GPU machine: then it must really have trained there
        assert json.loads((tmp_path / "run.json").read_text())["world"]["device"].startswith(("cuda", "gpu"))
        return
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "--device gpu" in r.stderr and "--device cpu" in r.stderr


def test_batch_not_divisible_by_workers_is_one_line(tmp_path):
    r = run_cli_isolated(
        "train", "mnist1d-cnn", "--framework", "torch", "--nproc", "3", "--batch-size", "100", "--out", str(tmp_path)
    )
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "--batch-size 100 is not divisible by --nproc 3" in r.stderr


def test_jax_has_one_cpu_device_per_core_and_a_mesh_that_divides_the_batch():
    """In-process JAX (conftest imports the backend first, as the CLI does) gets one XLA:CPU device
    per core; a batch the devices don't divide trains on the most devices that do divide it."""
    import dataclasses

    import jax

    from diptych.backends import load_backend
    from diptych.tasks import Budget, get_task

    assert len(jax.devices("cpu")) == usable_cores()
    if usable_cores() < 2:
        pytest.skip("one core: nothing to shard over")
    backend = load_backend("jax")
    task = get_task("mnist1d-cnn")
    cores = usable_cores()
    prime = next(n for n in range(cores + 1, 2 * cores + 2) if all(n % d for d in range(2, n)))
    for batch, devices in [(2 * cores, cores), (prime, 1)]:  # a prime above the core count: only 1 divides it
        world = backend.distributed.init("cpu", batch)
        t = dataclasses.replace(task, budget=Budget(1, batch))
        trainer = backend.train.Trainer(t, 0, 10, world=world)
        assert world.devices == devices and (world.mesh is None) == (devices == 1)
        loss = trainer.train_step(np.zeros((batch, 40), np.float32), np.zeros(batch, np.int32))
        assert np.isfinite(float(loss))

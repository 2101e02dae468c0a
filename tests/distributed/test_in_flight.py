"""Many JAX steps dispatched without a sync, on a mesh of 2 XLA:CPU devices, finish (no deadlock).

Without the trainer's bound on unfinished steps (``backends/jax/train.py: IN_FLIGHT``), 60-300 such
steps left one device's gradient all-reduce waiting for its partner, and XLA aborted the process
after 40 s. A subprocess, because that abort would take the test run down with it.
"""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.full  # the full tier: many steps in flight on a 2-device mesh

SCRIPT = """
import numpy as np
from diptych.backends import load_backend
from diptych.tasks import get_task

backend = load_backend("jax")
task = get_task("mnist-mlp").with_overrides(batch_size=32)
world = backend.distributed.init("cpu", 32)
assert world.devices == 2, world.devices
trainer = backend.train.Trainer(task, 0, total_steps=1000, world=world)
rng = np.random.default_rng(0)
x, y = rng.standard_normal((32, 28, 28), dtype=np.float32), rng.integers(0, 10, 32)
losses = [trainer.train_step(x, y) for _ in range(300)]  # no sync in between
out = trainer.losses_to_numpy(losses)
assert np.isfinite(out).all() and out[-1] < out[0], (out[0], out[-1])
print("ok", out[0], out[-1])
"""


def test_jax_steps_dispatched_without_a_sync_finish_on_two_devices():
    pytest.importorskip("jax")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    r = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=150)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]

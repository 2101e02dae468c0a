"""Worker for the equivalence tests: N steps of mnist1d-cnn on one framework's data-parallel engine.

Run as one process, under torchrun, under ``jax.distributed`` env vars, or with N virtual JAX
devices; every form does the same thing: each worker takes its shard of the same global batches,
and the lead writes the global per-step losses and the final weights to OUT (an .npz file).

    python tests/distributed/steps.py FRAMEWORK OUT [REFERENCE]

With REFERENCE, the lead also trains a plain one-device trainer (no parallelize) on the whole
global batches and writes it there: 2 virtual JAX devices and their 1-device reference then
come from one process start.
"""

import sys

import numpy as np

from diptych.backends import load_backend
from diptych.data import Batches, load_dataset
from diptych.launch import exit_process
from diptych.tasks import get_task

STEPS = 20


def train(backend, world, parallel: bool, out: str) -> None:
    task = get_task("mnist1d-cnn")
    data = load_dataset(task.dataset)
    rank, size = (world.rank, world.size) if parallel else (0, 1)
    batches = Batches(len(data.x_train), task.budget.batch_size, seed=0).shard(rank, size)
    trainer = backend.train.Trainer(task, 0, STEPS, device=world.device, world=world if parallel else None)
    losses = [
        trainer.train_step(data.x_train[idx], data.y_train[idx])  # (B / size, 40), (B / size,)
        for _, idx in zip(range(STEPS), batches.epoch(0))
    ]
    losses = trainer.losses_to_numpy(losses)  # (STEPS,)
    losses = world.mean(losses) if parallel else losses  # global-batch losses
    devices = world.devices if parallel else 1
    if world.lead:
        np.savez(out, losses=losses, world=np.array([size, devices]), **trainer.export_weights())


def main(framework: str, out: str, reference: str | None = None) -> None:
    backend = load_backend(framework)
    world = backend.distributed.init("cpu")
    train(backend, world, True, out)
    if reference and world.lead:
        train(backend, world, False, reference)
    world.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
    exit_process(0)  # past the teardown where a torch worker can abort (launch.skip_teardown)

"""Worker for the equivalence tests: N steps of mnist1d-cnn on one framework's data-parallel engine.

Run as one process, under torchrun, under ``jax.distributed`` env vars, or with N virtual JAX
devices; every form does the same thing: each worker takes its shard of the same global batches,
and the lead writes the global per-step losses and the final weights to OUT (an .npz file).

    python tests/distributed/steps.py FRAMEWORK OUT [STEPS]
"""

import sys

import numpy as np

from diptych.backends import load_backend
from diptych.data import Batches, load_dataset
from diptych.tasks import get_task


def main(framework: str, out: str, steps: int = 20) -> None:
    backend = load_backend(framework)
    world = backend.distributed.init("cpu")
    task = get_task("mnist1d-cnn")
    data = load_dataset(task.dataset)
    batches = Batches(len(data.x_train), task.budget.batch_size, seed=0).shard(world.rank, world.size)
    trainer = world.parallelize(backend.train.Trainer(task, 0, steps, device=world.device))
    losses = [trainer.train_step(data.x_train[idx], data.y_train[idx])  # (B / world, 40), (B / world,)
              for _, idx in zip(range(steps), batches.epoch(0))]
    losses = world.mean(trainer.losses_to_numpy(losses))  # (steps,) global-batch losses
    if world.lead:
        np.savez(out, losses=losses, world=np.array([world.size, world.devices]), **trainer.export_weights())
    world.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *map(int, sys.argv[3:]))

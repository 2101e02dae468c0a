"""Worker for the FSDP tests: 20 steps of one task with sharded (or replicated) parameters.

    python tests/distributed/sharded_steps.py FRAMEWORK TASK SHARD OUT [REFERENCE]

Run as one process (``SHARD`` none: the 1-worker reference), under torchrun, with ``jax.distributed``
env vars, or with N virtual JAX devices; each worker takes its shard of the same global batches. The
lead writes OUT (an .npz): the global per-step losses, the world, every worker's bytes held
(``Trainer.held_bytes``, gathered), and the canonical weights (``w<step>.<name>``) and optimizer state
(``o<step>.<name>``) gathered from the shards after steps 10 and 20, and whether loading the latter back
(re-sharding it) and gathering again gives the same arrays (``reloaded``). With REFERENCE, the lead also trains
a one-device trainer and writes it there (2 virtual JAX devices and their reference from one process start).
"""

import json
import sys

import numpy as np

from diptych.backends import load_backend
from diptych.driver import train_batches
from diptych.launch import exit_process
from diptych.tasks import get_task

STEPS = 20


def train(backend, task, data, world, out: str) -> None:
    """``world``: the sharded world, or ``None`` for a plain one-device trainer on the whole batches."""
    rank, size = (world.rank, world.size) if world is not None else (0, 1)
    batches = train_batches(data, task.budget.batch_size, seed=0).shard(rank, size)
    device = world.device if world is not None else "cpu"
    trainer = backend.train.Trainer(task, 0, STEPS, device=device, world=world)
    losses, state = [], {}
    for step, idx in zip(range(1, STEPS + 1), batches.epoch(0)):
        losses.append(trainer.train_step(data.x_train[idx], data.y_train[idx]))  # this worker's rows
        if step in (STEPS // 2, STEPS):  # every worker: gathering the shards is a collective
            state |= {f"w{step}.{k}": v for k, v in trainer.export_weights().items()}
            state |= {f"o{step}.{k}": v for k, v in trainer.export_opt_state().items()}
    # Back into the shards and out again: loading canonical state re-shards it exactly (what --resume does).
    trainer.load_weights({k[4:]: v for k, v in state.items() if k.startswith("w20.")})
    trainer.load_opt_state({k[4:]: v for k, v in state.items() if k.startswith("o20.")})
    again = {f"w20.{k}": v for k, v in trainer.export_weights().items()}
    again |= {f"o20.{k}": v for k, v in trainer.export_opt_state().items()}
    reloaded = again.keys() == {k for k in state if k.startswith(("w20.", "o20."))}
    reloaded = reloaded and all(np.array_equal(v, state[k]) for k, v in again.items())
    losses = trainer.losses_to_numpy(losses)  # (STEPS,)
    if world is not None:
        losses = world.mean(losses)  # global-batch losses
    held = world.gather(trainer.held_bytes()) if world is not None else [trainer.held_bytes()]
    if world is None or world.lead:
        devices = world.devices if world is not None else 1
        np.savez(
            out,
            losses=losses,
            world=np.array([size, devices]),
            held=np.array(json.dumps(held)),
            reloaded=reloaded,
            **state,
        )


def main(framework: str, task_name: str, shard: str, out: str, reference: str | None = None) -> None:
    backend = load_backend(framework)
    task = get_task(task_name)
    task, data, _ = task.objective.load(task, None)
    world = backend.distributed.init("cpu", task.budget.batch_size, shard=shard)
    train(backend, task, data, world if world.size > 1 or world.mesh is not None else None, out)
    if reference and world.lead:
        train(backend, task, data, None, reference)
    world.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
    exit_process(0)  # past the teardown where a torch worker can abort (launch.skip_teardown)

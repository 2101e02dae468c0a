"""Training on several devices in PyTorch: DDP on 2 CPU processes gives the loss of 1 device.

Short answer: one process per device, ``dist.init_process_group`` (gloo on CPUs, nccl on GPUs) and
``DistributedDataParallel(model)``; each process takes its shard of the *global* batch, and DDP averages
the gradients during ``backward()``, which equals the gradient of the global-batch mean loss. So 2
processes follow 1 device's trajectory: checked here step by step (launcher: ``torch.multiprocessing``
here, ``torchrun`` in real jobs; see ``diptych train --nproc``).
What the seed answer #11 got wrong (JAX): ``jax.experimental.partition`` never existed (ImportError), and
its loop ran plain gradient descent on one device: nothing in it was distributed.
Run: ``python -m diptych.cookbook.distributed.torch`` (prints one JSON line; ``--fast`` changes nothing).
"""

import argparse
import json
import socket

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

STEPS, BATCH, LR = 20, 64, 0.5
rng = np.random.default_rng(0)
X, Y = rng.standard_normal((STEPS * BATCH, 20)).astype(np.float32), rng.integers(0, 4, STEPS * BATCH)
W1 = (rng.standard_normal((32, 20)) / 20**0.5).astype(np.float32)  # (out, in), torch's layout
W2 = (rng.standard_normal((4, 32)) / 32**0.5).astype(np.float32)


def train(rank, world, port=None, results=None):  # one process per device; world 1 is the reference run
    torch.set_num_threads(1)
    model = nn.Sequential(nn.Linear(20, 32), nn.Tanh(), nn.Linear(32, 4))
    with torch.no_grad():  # the same initial weights as the JAX twin: from numpy
        model[0].weight.copy_(torch.from_numpy(W1)), model[0].bias.zero_()
        model[2].weight.copy_(torch.from_numpy(W2)), model[2].bias.zero_()
    if world > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
        model = DDP(model)  # broadcasts rank 0's weights, then all-reduces (averages) gradients in backward()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    losses = []
    for step in range(STEPS):
        rows = slice(step * BATCH + rank * BATCH // world, step * BATCH + (rank + 1) * BATCH // world)  # my shard
        loss = F.cross_entropy(model(torch.from_numpy(X[rows])), torch.from_numpy(Y[rows]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        global_loss = loss.detach().clone()
        if world > 1:
            dist.all_reduce(global_loss)  # the sum of the shard means ...
        losses.append(global_loss.item() / world)  # ... over equal shards is the global mean
    if world > 1:
        if rank == 0:
            results.put(losses)
        dist.destroy_process_group()
    return losses


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).add_argument("--fast", action="store_true")
    # fork: the workers inherit the imported modules ("spawn", the portable choice, re-imports torch in each);
    # fork before this process computes anything, so no thread pool is copied half-way
    results = torch.multiprocessing.get_context("fork").SimpleQueue()
    torch.multiprocessing.start_processes(train, args=(2, free_port(), results), nprocs=2, start_method="fork")
    two = results.get()
    one = train(0, 1)
    rel = max(abs(a - b) / abs(a) for a, b in zip(one, two, strict=True))
    print(
        json.dumps(
            {
                "recipe": "distributed",
                "framework": "torch",
                "engine": "DDP, gloo, 2 processes",
                "max_rel_diff": rel,
                "loss_1_device": one,
                "loss_2_devices": two,
            }
        )
    )


if __name__ == "__main__":
    main()

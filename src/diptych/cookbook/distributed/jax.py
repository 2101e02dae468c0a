"""Training on several devices in JAX: a batch sharded over a 2-device ``Mesh`` gives the loss of 1 device.

Short answer: make a ``Mesh`` of the devices with a ``"data"`` axis, put the batch on it sharded
``P("data")`` and the parameters replicated ``P()``, and ``jax.jit`` the same step as on one device:
XLA splits the work and inserts the all-reduce of the gradients. Here 2 CPU devices
(``jax_num_cpu_devices``, set before JAX first runs) follow 1 device's trajectory step by step.
Many hosts: ``jax.distributed.initialize()`` and the same code (see ``diptych train --nproc``).
``pmap`` is the old way; ``jax.sharding`` is the current one.
What the seed answer #11 got wrong: ``jax.experimental.partition`` never existed (ImportError), and
its loop ran plain gradient descent on one device: nothing in it was distributed.
Run: ``python -m diptych.cookbook.distributed.jax`` (prints one JSON line; ``--fast`` changes nothing).
"""

import argparse
import json

import jax
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

jax.config.update("jax_num_cpu_devices", 2)  # 2 XLA devices on this CPU; must come before JAX's first use
STEPS, BATCH, LR = 20, 64, 0.5
rng = np.random.default_rng(0)
X, Y = rng.standard_normal((STEPS * BATCH, 20)).astype(np.float32), rng.integers(0, 4, STEPS * BATCH)
W1 = (rng.standard_normal((32, 20)) / 20**0.5).astype(np.float32)  # (out, in), torch's layout
W2 = (rng.standard_normal((4, 32)) / 32**0.5).astype(np.float32)


def loss_fn(params, x, y):  # the global-batch mean loss, written as for one device
    logits = jax.numpy.tanh(x @ params["w1"].T + params["b1"]) @ params["w2"].T + params["b2"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


@jax.jit  # the same compiled step for 1 and 2 devices: the input shardings decide how it is split
def train_step(params, x, y):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    return jax.tree.map(lambda p, g: p - LR * g, params, grads), loss


def train(world):
    mesh = jax.make_mesh((world,), ("data",), devices=jax.devices()[:world])
    batch_sharding, replicated = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
    params = {"w1": W1, "b1": np.zeros(32, np.float32), "w2": W2, "b2": np.zeros(4, np.float32)}  # the torch twin's
    params = jax.device_put(params, replicated)  # a full copy on every device
    losses = []
    for step in range(STEPS):
        rows = slice(step * BATCH, (step + 1) * BATCH)
        x = jax.device_put(X[rows], batch_sharding)  # (64, 20): rows 0-31 on device 0, 32-63 on device 1
        y = jax.device_put(Y[rows].astype(np.int32), batch_sharding)
        params, loss = train_step(params, x, y)
        losses.append(float(loss))
    return losses, [str(s.data.shape) for s in x.addressable_shards]


def main():
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).add_argument("--fast", action="store_true")
    one, _ = train(1)
    two, shards = train(2)
    rel = max(abs(a - b) / abs(a) for a, b in zip(one, two, strict=True))
    print(
        json.dumps(
            {
                "recipe": "distributed",
                "framework": "jax",
                "engine": "Mesh + NamedSharding, 2 CPU devices",
                "shards": shards,
                "max_rel_diff": rel,
                "loss_1_device": one,
                "loss_2_devices": two,
            }
        )
    )


if __name__ == "__main__":
    main()

"""Optimizing a model's training in JAX: LR warmup + cosine, gradient clipping, AdamW, bf16.

Short answer: optax builds it all from parts: a schedule is a function of the step
(``join_schedules`` of ``linear_schedule`` warmup and ``cosine_decay_schedule``), handed to
``optax.adamw`` as its learning rate, and ``optax.chain(optax.clip_by_global_norm(...), ...)`` clips
before the update; bf16 compute comes from the layers' ``dtype``. The printed learning rates equal
torch's ``SequentialLR`` in the torch twin.
What the seed answers got wrong: "how do I optimize a model?" was answered (#13, #16) with Adam on
``x**2``; the JAX one called ``jax.optimizers.Adam``, which never existed.
Run: ``python -m diptych.cookbook.schedules.jax [--fast]`` (prints one JSON line).
"""

import argparse
import json
import sys

import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

PEAK_LR, CLIP, WD = 1e-3, 1.0, 1e-2


def load_mnist():
    from diptych.data import load_dataset  # numpy arrays, standardized; no torchvision

    try:
        return load_dataset("mnist")
    except Exception as e:  # missing files: say where to put them, in one line
        sys.exit(
            f"MNIST not available ({' '.join(str(e).split())[:200]}); put the four IDX .gz files in "
            "$DIPTYCH_DATA/mnist/"
        )


class MLP(nnx.Module):  # bf16 matmuls; parameters (and so gradients and optimizer state) stay float32
    def __init__(self, rngs: nnx.Rngs):
        mixed = dict(dtype=jnp.bfloat16, param_dtype=jnp.float32, rngs=rngs)
        self.fc1, self.fc2 = nnx.Linear(784, 256, **mixed), nnx.Linear(256, 128, **mixed)
        self.fc3 = nnx.Linear(128, 10, **mixed)

    def __call__(self, x):
        return self.fc3(nnx.relu(self.fc2(nnx.relu(self.fc1(x))))).astype(jnp.float32)


@nnx.jit
def train_step(model, optimizer, x, y):
    def loss_fn(model):
        return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss, optax.global_norm(grads)  # the norm before clipping


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="150 steps, 2,000 test images")
    args = parser.parse_args()
    data = load_mnist()
    x_train, y_train = data.x_train.reshape(-1, 784), data.y_train
    steps = 150 if args.fast else 4 * (len(x_train) // 128)
    warmup = steps // 10

    model = MLP(nnx.Rngs(0))
    schedule = optax.join_schedules(
        [optax.linear_schedule(PEAK_LR * 1e-3, PEAK_LR, warmup), optax.cosine_decay_schedule(PEAK_LR, steps - warmup)],
        boundaries=[warmup],
    )
    tx = optax.chain(optax.clip_by_global_norm(CLIP), optax.adamw(schedule, weight_decay=WD))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    lrs, clipped = [], 0
    for step in range(steps):
        idx = np.random.default_rng(step).choice(len(x_train), 128, replace=False)
        loss, norm = train_step(model, optimizer, x_train[idx], y_train[idx])
        clipped += int(norm > CLIP)
        lrs.append(float(schedule(step)))  # the rate this step used (optax counts steps inside its state)

    n_test = 2000 if args.fast else len(data.x_test)
    accuracy = (np.asarray(model(data.x_test[:n_test].reshape(-1, 784)).argmax(1)) == data.y_test[:n_test]).mean()
    marks = [0, 1, warmup - 1, warmup, steps // 2, steps - 1]
    print(
        json.dumps(
            {
                "recipe": "schedules",
                "framework": "jax",
                "steps": steps,
                "lr_at": marks,
                "lr": [lrs[i] for i in marks],
                "clipped_fraction": clipped / steps,
                "test_accuracy": round(float(accuracy), 4),
            }
        )
    )


if __name__ == "__main__":
    main()

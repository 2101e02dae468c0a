"""An MLP classifier for MNIST in JAX (Flax NNX + optax, 784-256-128-10).

Short answer: an ``nnx.Module`` of ``nnx.Linear`` layers, ``nnx.Optimizer(model, optax.adam(...))``,
and one ``nnx.jit``-compiled step that computes ``nnx.value_and_grad`` and updates in place.
What the seed answer #20 got wrong: ``jax.nn`` has no ``Dense`` (nor ``Module``): the code raised
``AttributeError``; it ran an MLP through ``lax.scan`` over pixels, never trained and never evaluated.
Run: ``python -m diptych.cookbook.mlp.jax [--fast]`` (prints one JSON line).
"""

import argparse
import json
import sys

import numpy as np
import optax
from flax import nnx


def load_mnist():
    from diptych.data import load_dataset  # numpy arrays, standardized; no torchvision

    try:
        return load_dataset("mnist")
    except Exception as e:  # missing files: say where to put them, in one line
        sys.exit(
            f"MNIST not available ({' '.join(str(e).split())[:200]}); put the four IDX .gz files in "
            "$DIPTYCH_DATA/mnist/"
        )


class MLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.fc1, self.fc2, self.fc3 = (
            nnx.Linear(784, 256, rngs=rngs),
            nnx.Linear(256, 128, rngs=rngs),
            nnx.Linear(128, 10, rngs=rngs),
        )

    def __call__(self, x):  # (B, 784) -> (B, 10)
        return self.fc3(nnx.relu(self.fc2(nnx.relu(self.fc1(x)))))


@nnx.jit  # data comes in as arguments: closing over the dataset would bake it into the program
def train_step(model, optimizer, x, y):
    def loss_fn(model):
        return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)  # a pure optax update, written back into the module
    return loss


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="200 steps (for tests)")
    args = parser.parse_args()
    data = load_mnist()
    x_train, y_train = data.x_train.reshape(-1, 784), data.y_train  # (N, 784), (N,)
    x_test, y_test = data.x_test.reshape(-1, 784), data.y_test

    model = MLP(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)

    batch, epochs = 128, (1 if args.fast else 8)
    steps_per_epoch = 200 if args.fast else len(x_train) // batch
    step = 0
    for epoch in range(epochs):
        order = np.random.default_rng(epoch).permutation(len(x_train))  # same batches in both twins
        for i in range(steps_per_epoch):
            idx = order[i * batch : (i + 1) * batch]
            x, y = x_train[idx], y_train[idx]  # (B, 784), (B,)
            loss = train_step(model, optimizer, x, y)
            step += 1

    accuracy = float((model(x_test).argmax(1) == y_test).mean())  # no dropout/batch norm: no eval mode needed
    print(
        json.dumps(
            {
                "recipe": "mlp",
                "framework": "jax",
                "steps": step,
                "final_loss": round(float(loss), 4),
                "test_accuracy": round(accuracy, 4),
            }
        )
    )


if __name__ == "__main__":
    main()

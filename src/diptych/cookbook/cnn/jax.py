"""A CNN classifier for MNIST in JAX (Flax NNX): conv3x3(32)-pool-conv3x3(64)-pool-fc128-fc10.

Short answer: ``nnx.Conv`` on channels-last ``(B, 28, 28, 1)`` images; two 2x2 max pools take
28 -> 14 -> 7, so the first dense layer takes ``7 * 7 * 64 = 3136`` features. Train with optax Adam
in one ``nnx.jit`` step. What the seed answer #8 got wrong: ``jax.nn`` has no ``Module``, ``Sequential``,
``Conv2d`` or ``Dense`` (that is torch's vocabulary; JAX's layers live in Flax), and ``model.init`` is
Linen's, not a method of such a class; the torch answers #1/#18 flattened to 64x6x6 / 32x6x6.
Run: ``python -m diptych.cookbook.cnn.jax [--fast]`` (prints one JSON line).
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


def max_pool2(x):  # (B, H, W, C) -> (B, H/2, W/2, C); a reshape-and-max: XLA:CPU's reduce_window backward is slow
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


class CNN(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.conv1, self.conv2 = nnx.Conv(1, 32, (3, 3), rngs=rngs), nnx.Conv(32, 64, (3, 3), rngs=rngs)
        self.fc1, self.fc2 = nnx.Linear(7 * 7 * 64, 128, rngs=rngs), nnx.Linear(128, 10, rngs=rngs)

    def __call__(self, x):  # (B, 28, 28, 1) channels last; padding "SAME" is the default
        x = max_pool2(nnx.relu(self.conv1(x)))  # (B, 14, 14, 32)
        x = max_pool2(nnx.relu(self.conv2(x)))  # (B, 7, 7, 64)
        return self.fc2(nnx.relu(self.fc1(x.reshape(x.shape[0], -1))))  # (B, 3136) -> (B, 10)


@nnx.jit  # data comes in as arguments: closing over the dataset would bake it into the program
def train_step(model, optimizer, x, y):
    def loss_fn(model):
        return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="60 steps, 1,000 test images (for tests)")
    args = parser.parse_args()
    data = load_mnist()
    x_train, y_train = data.x_train[..., None], data.y_train  # (N, 28, 28, 1), (N,)
    n_test = 1000 if args.fast else len(data.x_test)
    x_test, y_test = data.x_test[:n_test, ..., None], data.y_test[:n_test]

    model = CNN(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)

    batch, epochs = 64, (1 if args.fast else 2)
    steps_per_epoch = 60 if args.fast else len(x_train) // batch
    step = 0
    for epoch in range(epochs):
        order = np.random.default_rng(epoch).permutation(len(x_train))  # same batches in both twins
        for i in range(steps_per_epoch):
            idx = order[i * batch : (i + 1) * batch]
            x, y = x_train[idx], y_train[idx]  # (B, 28, 28, 1), (B,)
            loss = train_step(model, optimizer, x, y)
            step += 1

    predict = nnx.jit(lambda model, x: model(x).argmax(1))
    accuracy = float(
        np.mean([(predict(model, x_test[i : i + 1000]) == y_test[i : i + 1000]).mean() for i in range(0, n_test, 1000)])
    )
    print(
        json.dumps(
            {
                "recipe": "cnn",
                "framework": "jax",
                "steps": step,
                "final_loss": round(float(loss), 4),
                "test_accuracy": round(accuracy, 4),
            }
        )
    )


if __name__ == "__main__":
    main()

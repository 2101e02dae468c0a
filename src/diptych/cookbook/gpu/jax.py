"""Using an accelerator in JAX: ``jax.devices()``, ``jax.device_put``, bf16 compute with float32 weights.

Short answer: JAX uses the best backend it finds (GPU/TPU if its plugin is installed, else the CPU):
``jax.devices()`` lists them, ``jax.default_backend()`` names the one in use, and ``jax.device_put(x,
device)`` places an array; jitted code runs where its inputs live. Mixed precision: layers with
``dtype=jnp.bfloat16`` (compute) and ``param_dtype=jnp.float32`` (master weights). With no accelerator it
runs on the CPU and says so in its result.
What the seed answer #12 got wrong: it imported ``jax.experimental.stax`` (removed), ``FanOutForward``
and ``jax.experimental.partition`` (never existed), then ran torch code; #10/#14 used a 32x6x6 flatten.
Run: ``python -m diptych.cookbook.gpu.jax [--fast]`` (prints one JSON line).
"""

import argparse
import json
import sys

import jax
import jax.numpy as jnp
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


class Net(nnx.Module):  # one conv, one pool: 14 x 14 x 32 features; bf16 compute, float32 parameters
    def __init__(self, rngs: nnx.Rngs):
        mixed = dict(dtype=jnp.bfloat16, param_dtype=jnp.float32, rngs=rngs)
        self.conv, self.fc1, self.fc2 = (
            nnx.Conv(1, 32, (3, 3), **mixed),
            nnx.Linear(14 * 14 * 32, 128, **mixed),
            nnx.Linear(128, 10, **mixed),
        )

    def __call__(self, x):  # (B, 28, 28, 1) -> (B, 10)
        x = nnx.relu(self.conv(x))
        x = x.reshape(x.shape[0], 14, 2, 14, 2, 32).max(axis=(2, 4))  # 2x2 max pool: (B, 14, 14, 32)
        return self.fc2(nnx.relu(self.fc1(x.reshape(x.shape[0], -1))))


@nnx.jit
def train_step(model, optimizer, x, y):
    def loss_fn(model):  # the loss in float32: a bf16 log-softmax loses digits
        return optax.softmax_cross_entropy_with_integer_labels(model(x).astype(jnp.float32), y).mean()

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="20 steps, 256 test images (bf16 is slow on most CPUs)")
    args = parser.parse_args()
    device = jax.devices()[0]  # the default backend's first device
    data = load_mnist()
    x_train, y_train = data.x_train[..., None], data.y_train
    n_test = 256 if args.fast else len(data.x_test)

    model = Net(nnx.Rngs(0))  # created on the default device
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
    order = np.random.default_rng(0).permutation(len(x_train))
    for step in range(20 if args.fast else len(x_train) // 64):
        idx = order[step * 64 : (step + 1) * 64]
        x = jax.device_put(x_train[idx], device)  # (B, 28, 28, 1); asynchronous copy
        y = jax.device_put(y_train[idx], device)
        loss = train_step(model, optimizer, x, y)

    logits = nnx.jit(lambda m, x: m(x))(model, jax.device_put(data.x_test[:n_test, ..., None], device))
    accuracy = float((logits.argmax(1) == data.y_test[:n_test]).mean())
    on_cpu = jax.default_backend() == "cpu"
    print(
        json.dumps(
            {
                "recipe": "gpu",
                "framework": "jax",
                "device": str(device),
                "accelerator": not on_cpu,
                "note": "no GPU found: ran on the CPU" if on_cpu else f"ran on {device}",
                "compute_dtype": str(logits.dtype),
                "param_dtype": str(model.fc1.kernel[...].dtype),
                "test_accuracy": round(accuracy, 4),
                "final_loss": round(float(loss), 4),
            }
        )
    )


if __name__ == "__main__":
    main()

"""The input pipeline in JAX: a numpy iterator that gives the torch twin's exact batches.

Short answer: JAX has no data loader of its own: iterate over numpy arrays (or use grain, or
tf.data) and hand each batch to the device with ``jax.device_put``, which copies asynchronously so the
next batch is prepared while the step runs. With the order from a numpy permutation seeded by the epoch,
the batches are the ones torch's ``DataLoader`` gives when that order is its ``sampler``.
What the seed answers got wrong: none showed a JAX pipeline; #12 pasted torchvision's loader into a
JAX program.
Run: ``python -m diptych.cookbook.data_loading.jax [--fast]`` (prints one JSON line).
"""

import argparse
import hashlib
import json
import sys

import jax
import numpy as np


def load_mnist():
    from diptych.data import load_dataset  # numpy arrays, standardized by the training set's mean and std

    try:
        return load_dataset("mnist")
    except Exception as e:  # missing files: say where to put them, in one line
        sys.exit(
            f"MNIST not available ({' '.join(str(e).split())[:200]}); put the four IDX .gz files in "
            "$DIPTYCH_DATA/mnist/"
        )


def batches(x, y, order, batch_size):  # yields device arrays; drops the last partial batch
    for i in range(len(order) // batch_size):
        idx = order[i * batch_size : (i + 1) * batch_size]
        yield jax.device_put(x[idx]), jax.device_put(y[idx].astype(np.int32))  # JAX prefers 32-bit ints


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="only the first 50 batches (for tests)")
    args = parser.parse_args()
    data = load_mnist()
    order = np.random.default_rng(0).permutation(len(data.x_train))  # epoch 0's order, shared with the torch twin
    loader = batches(data.x_train, data.y_train, order, batch_size=128)

    digest, n_batches = hashlib.sha256(), 0
    for x, y in loader:  # x: (128, 28, 28) float32, y: (128,) int32
        digest.update(np.asarray(x).tobytes())
        digest.update(np.asarray(y).astype(np.int64).tobytes())
        n_batches += 1
        if args.fast and n_batches == 50:
            break
    print(
        json.dumps(
            {
                "recipe": "data-loading",
                "framework": "jax",
                "batches": n_batches,
                "batch_shape": list(x.shape),
                "dtypes": [str(x.dtype), str(y.dtype)],
                "sha256": digest.hexdigest(),
            }
        )
    )


if __name__ == "__main__":
    main()

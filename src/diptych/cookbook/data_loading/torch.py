"""The input pipeline in PyTorch: a ``Dataset`` and a ``DataLoader`` that give the JAX twin's exact batches.

Short answer: a map-style ``Dataset`` (``__len__`` + ``__getitem__``) over numpy arrays, and a
``DataLoader`` that batches and collates it. ``shuffle=True`` draws the order from torch's own RNG, so
to get the same batches as another framework, pass the order as the ``sampler`` (any iterable of
indices): here a numpy permutation seeded by the epoch, the same one the JAX iterator uses.
What the seed answer #9 got wrong: nothing that fails (it runs, given torchvision and a download), but
it needs torchvision to read four IDX files and its ``Normalize((0.5,), (0.5,))`` is not MNIST's statistics.
Run: ``python -m diptych.cookbook.data_loading.torch [--fast]`` (prints one JSON line).
"""

import argparse
import hashlib
import json
import sys

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset


def load_mnist():
    from diptych.data import load_dataset  # numpy arrays, standardized by the training set's mean and std

    try:
        return load_dataset("mnist")
    except Exception as e:  # missing files: say where to put them, in one line
        sys.exit(
            f"MNIST not available ({' '.join(str(e).split())[:200]}); put the four IDX .gz files in "
            "$DIPTYCH_DATA/mnist/"
        )


class ArrayDataset(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):  # one example; the DataLoader stacks them into a batch
        return torch.from_numpy(self.x[i]), int(self.y[i])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="only the first 50 batches (for tests)")
    args = parser.parse_args()
    data = load_mnist()
    order = np.random.default_rng(0).permutation(len(data.x_train))  # epoch 0's order, shared with the JAX twin
    loader = DataLoader(
        ArrayDataset(data.x_train, data.y_train), batch_size=128, sampler=order.tolist(), drop_last=True, num_workers=0
    )  # num_workers > 0: worker processes, same batches

    digest, n_batches = hashlib.sha256(), 0
    for x, y in loader:  # x: (128, 28, 28) float32, y: (128,) int64
        digest.update(x.numpy().tobytes())
        digest.update(y.numpy().astype(np.int64).tobytes())
        n_batches += 1
        if args.fast and n_batches == 50:
            break
    print(
        json.dumps(
            {
                "recipe": "data-loading",
                "framework": "torch",
                "batches": n_batches,
                "batch_shape": list(x.shape),
                "dtypes": [str(x.dtype), str(y.dtype)],
                "sha256": digest.hexdigest(),
            }
        )
    )


if __name__ == "__main__":
    main()

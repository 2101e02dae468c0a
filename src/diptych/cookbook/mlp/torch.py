"""An MLP classifier for MNIST in PyTorch (784-256-128-10).

Short answer: an ``nn.Sequential`` of ``nn.Linear`` and ``nn.ReLU``, ``torch.optim.Adam``, and the
``zero_grad / backward / step`` loop; evaluate under ``torch.no_grad()`` on the *test* split.
The seed answers #3 and #17 ran (given torchvision and a download) but printed ``len(loader) // 64``
as the number of steps (``len(loader)`` already counts batches); #20, the JAX one, did not run.
Run: ``python -m diptych.cookbook.mlp.torch [--fast]`` (prints one JSON line).
"""

import argparse
import json
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def load_mnist():
    from diptych.data import load_dataset  # numpy arrays, standardized; no torchvision

    try:
        return load_dataset("mnist")
    except Exception as e:  # missing files: say where to put them, in one line
        sys.exit(
            f"MNIST not available ({' '.join(str(e).split())[:200]}); put the four IDX .gz files in "
            "$DIPTYCH_DATA/mnist/"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="200 steps (for tests)")
    args = parser.parse_args()
    torch.manual_seed(0)
    data = load_mnist()
    x_train, y_train = data.x_train.reshape(-1, 784), data.y_train.astype(np.int64)  # (N, 784), (N,)
    x_test, y_test = torch.from_numpy(data.x_test.reshape(-1, 784)), torch.from_numpy(data.y_test.astype(np.int64))

    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    batch, epochs = 128, (1 if args.fast else 8)
    steps_per_epoch = 200 if args.fast else len(x_train) // batch
    step = 0
    for epoch in range(epochs):
        order = np.random.default_rng(epoch).permutation(len(x_train))  # same batches in both twins
        for i in range(steps_per_epoch):
            idx = order[i * batch : (i + 1) * batch]
            x, y = torch.from_numpy(x_train[idx]), torch.from_numpy(y_train[idx])  # (B, 784), (B,)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1

    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    print(
        json.dumps(
            {
                "recipe": "mlp",
                "framework": "torch",
                "steps": step,
                "final_loss": round(loss.item(), 4),
                "test_accuracy": round(accuracy, 4),
            }
        )
    )


if __name__ == "__main__":
    main()

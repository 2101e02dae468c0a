"""A CNN classifier for MNIST in PyTorch: conv3x3(32)-pool-conv3x3(64)-pool-fc128-fc10.

Short answer: ``nn.Conv2d`` on ``(B, 1, 28, 28)`` images; two 2x2 max pools take 28 -> 14 -> 7, so the
first dense layer takes ``64 * 7 * 7 = 3136`` features. Train with Adam; test on the test split.
What the seed answers got wrong: #1 flattened to ``64 * 6 * 6`` (a shape error at the first batch: the
features are 64x7x7); #18 used ``32 * 6 * 6`` for one conv layer whose output is 32x14x14; #8, the JAX
one, used ``jax.nn.Module``/``nn.Conv2d``/``nn.Dense``, none of which exist.
Run: ``python -m diptych.cookbook.cnn.torch [--fast]`` (prints one JSON line).
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


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 32, 3, padding=1), nn.Conv2d(32, 64, 3, padding=1)
        self.fc1, self.fc2 = nn.Linear(64 * 7 * 7, 128), nn.Linear(128, 10)  # 28 -> 14 -> 7 after two pools

    def forward(self, x):  # (B, 1, 28, 28) channels first
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # (B, 32, 14, 14)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # (B, 64, 7, 7)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))  # (B, 3136) -> (B, 10)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="60 steps, 1,000 test images (for tests)")
    args = parser.parse_args()
    torch.manual_seed(0)
    data = load_mnist()
    x_train, y_train = data.x_train[:, None], data.y_train.astype(np.int64)  # (N, 1, 28, 28), (N,)
    n_test = 1000 if args.fast else len(data.x_test)
    x_test = torch.from_numpy(data.x_test[:n_test, None])
    y_test = torch.from_numpy(data.y_test[:n_test].astype(np.int64))

    model = CNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    batch, epochs = 64, (1 if args.fast else 2)
    steps_per_epoch = 60 if args.fast else len(x_train) // batch
    step = 0
    for epoch in range(epochs):
        order = np.random.default_rng(epoch).permutation(len(x_train))  # same batches in both twins
        for i in range(steps_per_epoch):
            idx = order[i * batch : (i + 1) * batch]
            x, y = torch.from_numpy(x_train[idx]), torch.from_numpy(y_train[idx])  # (B, 1, 28, 28), (B,)
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
                "recipe": "cnn",
                "framework": "torch",
                "steps": step,
                "final_loss": round(loss.item(), 4),
                "test_accuracy": round(accuracy, 4),
            }
        )
    )


if __name__ == "__main__":
    main()

"""Image augmentation in PyTorch: batched, seeded shift/rotate/erase on the device, and why not flips.

Short answer: augment whole batches of tensors where they live (``F.affine_grid`` + ``F.grid_sample`` for
rotation and shift, a broadcast mask for random erasing), drawing from a seeded ``torch.Generator``.
What the seed answer #2 got wrong: it applied PIL transforms (``RandomRotation``, ``ToTensor``) to a
tensor, which raises a TypeError, and it flipped digits: a mirrored 2, 3, 4, 5, 7 or 9 is not that digit,
so the flip teaches wrong labels. Below, a model trained on shift/rotate/erase keeps its accuracy on
augmented test images but collapses on flipped ones (except on the symmetric 0, 1 and 8).
Run: ``python -m diptych.cookbook.augmentation.torch [--fast] [--png FILE]`` (prints one JSON line).
"""

import argparse
import json
import math
import os
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


def augment(x, generator, background):  # (B, 1, 28, 28) -> (B, 1, 28, 28): rotate +-15 deg, shift +-3 px, erase
    b = x.shape[0]
    angle = (torch.rand(b, generator=generator) * 2 - 1) * math.radians(15)
    shift = (torch.rand(b, 2, generator=generator) * 2 - 1) * 3 / 14  # affine_grid units: 14 px = 1
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (B, 28, 28, 2)
    x = F.grid_sample(x - background, grid, align_corners=False) + background  # outside -> background
    size = torch.randint(4, 11, (b, 2), generator=generator)  # one erased box of 4-10 px per side
    corner = (torch.rand(b, 2, generator=generator) * (28 - size)).long()
    pos = torch.arange(28)
    rows = (pos >= corner[:, :1]) & (pos < corner[:, :1] + size[:, :1])  # (B, 28)
    cols = (pos >= corner[:, 1:]) & (pos < corner[:, 1:] + size[:, 1:])  # (B, 28)
    return torch.where((rows[:, :, None] & cols[:, None, :])[:, None], background, x)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="150 steps, 2,000 test images (for tests)")
    parser.add_argument("--png", default="augmentation-torch.png", help="where to write the image grid")
    args = parser.parse_args()
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)  # augmentation draws: seeded, independent of the model's RNG
    data = load_mnist()
    background = float(data.x_train.min())  # standardized black
    x_train, y_train = torch.from_numpy(data.x_train[:, None]), torch.from_numpy(data.y_train.astype(np.int64))
    n_test = 2000 if args.fast else len(data.x_test)
    x_test = torch.from_numpy(data.x_test[:n_test, None])
    y_test = torch.from_numpy(data.y_test[:n_test].astype(np.int64))

    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    order = np.random.default_rng(0).permutation(len(x_train))
    for step in range(150 if args.fast else 3000):
        idx = torch.from_numpy(order[(step * 128) % 59904 :][:128])
        loss = F.cross_entropy(model(augment(x_train[idx], generator, background)), y_train[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    with torch.no_grad():
        test_sets = {"clean": x_test, "augmented": augment(x_test, generator, background), "flipped": x_test.flip(-1)}
        hits = {name: model(x).argmax(1) == y_test for name, x in test_sets.items()}
    per_digit = [round(hits["flipped"][y_test == d].float().mean().item(), 3) for d in range(10)]

    import matplotlib.pyplot as plt  # rows: clean, augmented, flipped; 8 test images each

    plt.imsave(args.png, torch.cat([torch.cat(list(x[:8, 0]), 1) for x in test_sets.values()], 0).numpy(), cmap="gray")
    png = os.path.abspath(args.png)
    print(
        json.dumps(
            {
                "recipe": "augmentation",
                "framework": "torch",
                "png": png,
                **{f"{k}_accuracy": round(v.float().mean().item(), 4) for k, v in hits.items()},
                "flipped_accuracy_by_digit": per_digit,
            }
        )
    )


if __name__ == "__main__":
    main()

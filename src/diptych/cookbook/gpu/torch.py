"""Using an accelerator in PyTorch: pick a device, move the model and each batch, bf16 autocast.

Short answer: choose ``torch.device("cuda")`` when ``torch.cuda.is_available()`` (``"mps"`` on Apple),
else the CPU; ``model.to(device)`` once, ``x.to(device)`` per batch; mixed precision with
``torch.autocast(device.type, dtype=torch.bfloat16)`` (bf16 needs no ``GradScaler``; float16 does).
With no accelerator it runs on the CPU and says so in its result.
What the seed answers got wrong: #10 and #14 flattened 32x14x14 features into ``nn.Linear(32 * 6 * 6, ...)``,
a shape error at the first batch, on any device; #12 (JAX) imported ``jax.experimental.stax`` (removed),
``FanOutForward`` and ``jax.experimental.partition`` (never existed) and then used torch.
Run: ``python -m diptych.cookbook.gpu.torch [--fast]`` (prints one JSON line).
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


def pick_device():
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class Net(nn.Module):  # the seed's one-conv model with the right flatten: 32 x 14 x 14 after one pool
    def __init__(self):
        super().__init__()
        self.conv, self.fc1, self.fc2 = nn.Conv2d(1, 32, 3, padding=1), nn.Linear(32 * 14 * 14, 128), nn.Linear(128, 10)

    def forward(self, x):  # (B, 1, 28, 28) -> (B, 10)
        x = F.max_pool2d(F.relu(self.conv(x)), 2)  # (B, 32, 14, 14)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="20 steps, 256 test images (bf16 is slow on most CPUs)")
    args = parser.parse_args()
    torch.manual_seed(0)
    device = pick_device()
    data = load_mnist()
    x_train, y_train = data.x_train[:, None], data.y_train.astype(np.int64)
    n_test = 256 if args.fast else len(data.x_test)

    model = Net().to(device)  # parameters stay float32 (the master copy); autocast computes in bf16
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    order = np.random.default_rng(0).permutation(len(x_train))
    for step in range(20 if args.fast else len(x_train) // 64):
        idx = order[step * 64 : (step + 1) * 64]
        x = torch.from_numpy(x_train[idx]).to(device, non_blocking=True)  # (B, 1, 28, 28)
        y = torch.from_numpy(y_train[idx]).to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
        logits = model(torch.from_numpy(data.x_test[:n_test, None]).to(device))
    accuracy = (logits.argmax(1).cpu() == torch.from_numpy(data.y_test[:n_test].astype(np.int64))).float().mean().item()
    print(
        json.dumps(
            {
                "recipe": "gpu",
                "framework": "torch",
                "device": str(device),
                "accelerator": device.type != "cpu",
                "note": "no GPU found: ran on the CPU" if device.type == "cpu" else f"ran on {device}",
                "compute_dtype": str(logits.dtype),
                "param_dtype": str(model.fc1.weight.dtype),
                "test_accuracy": round(accuracy, 4),
            }
        )
    )


if __name__ == "__main__":
    main()

"""Optimizing a model's training in PyTorch: LR warmup + cosine, gradient clipping, AdamW, bf16.

Short answer: an optimizer (``AdamW``: decoupled weight decay) plus a scheduler stepped once per step
(``SequentialLR`` of ``LinearLR`` warmup and ``CosineAnnealingLR``), ``clip_grad_norm_`` between
``backward()`` and ``step()`` (it returns the norm before clipping), and ``torch.autocast`` with bfloat16
for the forward pass. The printed learning rates equal optax's schedule in the JAX twin.
What the seed answers got wrong: "how do I optimize a model?" was answered (#13, #16) with Adam on
``x**2``, one of which crashed (no ``requires_grad``) and one of which called a nonexistent API.
Run: ``python -m diptych.cookbook.schedules.torch [--fast]`` (prints one JSON line).
"""

import argparse
import json
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR

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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="150 steps, 2,000 test images")
    args = parser.parse_args()
    torch.manual_seed(0)
    data = load_mnist()
    x_train, y_train = data.x_train.reshape(-1, 784), data.y_train.astype(np.int64)
    steps = 150 if args.fast else 4 * (len(x_train) // 128)
    warmup = steps // 10

    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = torch.optim.AdamW(model.parameters(), lr=PEAK_LR, weight_decay=WD)
    warm, cosine = LinearLR(optimizer, 1e-3, 1.0, warmup), CosineAnnealingLR(optimizer, steps - warmup)
    schedule = SequentialLR(optimizer, [warm, cosine], milestones=[warmup])  # PEAK_LR/1000 -> PEAK_LR, cosine -> 0
    lrs, clipped = [], 0
    for step in range(steps):
        idx = np.random.default_rng(step).choice(len(x_train), 128, replace=False)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16 matmuls; weights and grads stay float32
            loss = F.cross_entropy(model(torch.from_numpy(x_train[idx])), torch.from_numpy(y_train[idx]))
        optimizer.zero_grad()
        loss.backward()
        clipped += int(nn.utils.clip_grad_norm_(model.parameters(), CLIP) > CLIP)  # the global norm, before clipping
        lrs.append(optimizer.param_groups[0]["lr"])  # the rate this step uses
        optimizer.step()
        schedule.step()

    with torch.no_grad():
        n_test = 2000 if args.fast else len(data.x_test)
        logits = model(torch.from_numpy(data.x_test[:n_test].reshape(-1, 784)))
        accuracy = (logits.argmax(1).numpy() == data.y_test[:n_test]).mean()
    marks = [0, 1, warmup - 1, warmup, steps // 2, steps - 1]
    print(
        json.dumps(
            {
                "recipe": "schedules",
                "framework": "torch",
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

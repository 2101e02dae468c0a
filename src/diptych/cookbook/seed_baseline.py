"""The seed-faithful baseline: the widely copied PyTorch MNIST CNN recipe, as written.

Per-sample ``ToTensor`` + ``Normalize((0.5,), (0.5,))`` inside ``Dataset.__getitem__``, a ``DataLoader``
with batch 64 and shuffling, Adam at 1e-3 (constant), eager mode, 10 epochs: the recipe as written. Fixed
only enough to run: the snippet flattens to 64*6*6, which crashes; 64*7*7 is right for 28x28 inputs with
padding 1. (torchvision is not used; its ToTensor/Normalize are two lines, reproduced below.)

``--eval-every N`` also evaluates after every N steps, off the training clock (as ``diptych train
--eval-every`` does), so that its time to 99% is measured between epochs; ``--stop-at 0.99`` stops after the
first epoch at 99% instead of training all 10.

    python -m diptych.cookbook.seed_baseline --data-dir ../shared/data/mnist --out runs/baseline --eval-every 94
    python -m diptych.cookbook.seed_baseline --data-dir ../shared/data/mnist --burst 3   # a 3-second burst

`diptych bench mnist-cnn --baseline` runs it in the same interleaved series as the twins.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from torch.utils.data import DataLoader, Dataset

from diptych.data.datasets import IDX_SOURCES, locate_idx_files
from diptych.data.idx import read_idx
from diptych.records import hardware, peak_rss_mb, versions, write_json


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(64 * 7 * 7, 128)  # the seed snippet says 64 * 6 * 6
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.view(-1, 64 * 7 * 7)
        x = F.relu(self.fc1(x))
        return self.fc2(x)


class MNIST(Dataset):
    def __init__(self, images, labels):
        self.images, self.labels = np.array(images), labels  # writable, as torchvision holds them

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        x = torch.from_numpy(self.images[i]).float().div(255).unsqueeze(0)  # ToTensor: (1, 28, 28)
        x = (x - 0.5) / 0.5  # Normalize((0.5,), (0.5,)), as the recipe writes it
        return x, int(self.labels[i])


def load(data_dir):
    paths = locate_idx_files("mnist", IDX_SOURCES["mnist"], data_dir)
    arrays = {k: read_idx(p) for k, p in paths.items()}
    return (MNIST(arrays["train_images"], arrays["train_labels"]), MNIST(arrays["test_images"], arrays["test_labels"]))


def evaluate(model, loader, device="cpu"):
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in loader:
            correct += (model(x.to(device)).argmax(1).cpu() == y).sum().item()
    model.train()
    return correct / len(loader.dataset)


def pick_device(name: str) -> torch.device:
    """``cpu``, ``gpu`` (the first CUDA device) or ``auto`` (a GPU when torch sees one)."""
    if name == "gpu" and not torch.cuda.is_available():
        raise SystemExit("seed-baseline: --device gpu, but torch sees no CUDA device; use --device cpu")
    return torch.device("cuda:0" if name == "gpu" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def burst(args, train_set, test_set):
    """First-step time, steady train throughput over ``--burst`` seconds, eval throughput."""
    device = pick_device(args.device)
    model = Net().to(device)
    optimizer = optim.Adam(model.parameters(), lr=1e-3)
    loader = iter(DataLoader(train_set, batch_size=64, shuffle=True))
    t0 = t1 = time.perf_counter()
    step = 0
    while step < 2 or time.perf_counter() - t1 < args.burst:
        if step == 1:
            first, t1 = time.perf_counter() - t0, time.perf_counter()
        x, y = next(loader)
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        loss.item()  # wait for the step (a GPU runs asynchronously)
        step += 1
    train_sps = (step - 1) * 64 / (time.perf_counter() - t1)
    t2 = time.perf_counter()
    evaluate(model, DataLoader(test_set, batch_size=1000), device)
    eval_sps = len(test_set) / (time.perf_counter() - t2)
    return {
        "framework": "seed-baseline",
        "compile_seconds": first,
        "train_samples_per_second": train_sps,
        "eval_samples_per_second": eval_sps,
        "peak_rss_mb": peak_rss_mb(),
        "device": str(device),
    }


def train(args, train_set, test_set):
    device = pick_device(args.device)
    model = Net().to(device)
    optimizer = optim.Adam(model.parameters(), lr=1e-3)
    train_loader = DataLoader(train_set, batch_size=64, shuffle=True)
    test_loader = DataLoader(test_set, batch_size=1000)
    history, curve, step, evals = [], [], 0, []
    steady_samples, steady_seconds, compile_seconds = 0, 0.0, None
    clock, reached = 0.0, False  # the training clock: evaluations excluded (``--eval-every``)
    t_start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        t_epoch, losses, paused = time.perf_counter(), [], 0.0
        mark = t_epoch
        for x, y in train_loader:
            t_step = time.perf_counter()
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            step += 1
            if compile_seconds is None:
                compile_seconds = time.perf_counter() - t_step
            else:
                steady_samples += len(y)
            if step % 20 == 0:
                curve.append([step, float(np.mean(losses[-20:]))])
            if args.eval_every and step % args.eval_every == 0 and not reached:  # off the clock, until 99%
                t0 = time.perf_counter()
                clock += t0 - mark
                acc = evaluate(model, test_loader, device)
                mark = time.perf_counter()
                paused += mark - t0
                evals.append(
                    {"step": step, "train_seconds": round(clock, 3), "eval_seconds": round(mark - t0, 3)}
                    | {"test_accuracy": acc}
                )
                reached = acc >= 0.99
        clock += time.perf_counter() - mark
        steady_seconds += time.perf_counter() - t_epoch - paused - (compile_seconds if epoch == 0 else 0)
        acc = evaluate(model, test_loader, device)
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": float(np.mean(losses)),
                "test_accuracy": acc,
                "wall_seconds": round(time.perf_counter() - t_start, 3),
                "train_clock_seconds": round(clock, 3),
            }
        )
        print(
            f"seed-baseline epoch {epoch + 1}: loss {history[-1]['train_loss']:.4f} test acc {100 * acc:.2f}% "
            f"wall {history[-1]['wall_seconds']:.1f}s",
            flush=True,
        )
        if args.stop_at and acc >= args.stop_at:
            break
    return {
        "task": "mnist-cnn",
        "framework": "seed-baseline",
        "versions": versions({"torch": torch.__version__}),
        "hardware": hardware(str(device)),
        "config": {
            "epochs": len(history),
            "batch_size": 64,
            "lr": 1e-3,
            "optimizer": "adam",
            "schedule": "constant",
            "normalize": "(0.5, 0.5)",
            "recipe": "seed-faithful",
        },
        "dataset": {"name": "mnist", "train": len(train_set), "test": len(test_set)},
        "epochs": history,
        "test_accuracy": history[-1]["test_accuracy"],
        "target_accuracy": 0.99,
        "reached_target": history[-1]["test_accuracy"] >= 0.99,
        "num_params": sum(p.numel() for p in model.parameters()),
        "compile_seconds": compile_seconds,
        "samples_per_second": steady_samples / steady_seconds,
        "wall_seconds": history[-1]["wall_seconds"],
        "peak_rss_mb": peak_rss_mb(),
        "loss_curve": curve,
        **(
            {"eval_every": args.eval_every, "evals": evals, "train_clock_seconds": round(clock, 3)}
            if args.eval_every
            else {}
        ),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir")
    p.add_argument("--epochs", type=int, default=10, help="epochs (the recipe: 10)")
    p.add_argument(
        "--stop-at",
        type=float,
        default=0.0,
        help="stop after the first epoch at this test accuracy (0, the recipe: train all --epochs)",
    )
    p.add_argument("--eval-every", type=int, help="also evaluate after every N steps, off the training clock")
    p.add_argument("--device", choices=("auto", "cpu", "gpu"), default="cpu", help="where to train (default cpu)")
    p.add_argument("--burst", type=float, help="measure a burst of this many seconds instead of training")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, help="use only the first N images of each split (quick checks)")
    p.add_argument("--out", default="runs/seed-baseline")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.eval_every is not None and args.eval_every < 1:
        p.error(f"--eval-every {args.eval_every}: give a number of steps >= 1")
    torch.manual_seed(args.seed)
    train_set, test_set = load(args.data_dir)
    if args.limit:  # quick checks: the first N images of each split
        train_set.images, train_set.labels = train_set.images[: args.limit], train_set.labels[: args.limit]
        test_set.images, test_set.labels = test_set.images[: args.limit], test_set.labels[: args.limit]
    if args.burst:
        print(json.dumps(burst(args, train_set, test_set)))
        return
    record = train(args, train_set, test_set)
    write_json(Path(args.out) / "run.json", record)
    if args.json:
        print(json.dumps(record))


if __name__ == "__main__":
    main()

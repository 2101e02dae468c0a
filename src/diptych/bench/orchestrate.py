"""``diptych bench``: an honest side-by-side benchmark of the twins (and the seed baseline).

Method:

1. **Interleaved bursts.** For ``r`` in ``1..R``, each contestant in turn (A B C A B C ...) runs a
   fresh process that builds the model, times the first step (tracing/compilation included),
   then trains for ``--burst`` seconds at steady state, then evaluates the test set, and runs a
   matmul probe. Machine drift (this host class has slowed multi-threaded work 4-15x for minutes
   at a time) then hits every contestant alike; the report gives medians and spread.
2. **Time to target.** Each contestant trains to the end of its budget, one after the other (never
   two at once: two framework processes on two cores slow each other by an order of magnitude),
   evaluating the test set every ``--eval-every`` steps (default: ten times per epoch) until it first
   reaches the target, as AlgoPerf does. Time to target = the **training clock** (compile included,
   evaluations excluded and reported on their own) at the first evaluation at the target.
3. **MFU.** Achieved FLOP/s = steady samples/s x analytic training FLOPs per sample
   (:mod:`diptych.flops`); MFU = that / the best float32 matmul rate measured in the same run.
4. **Decomposition** (``--baseline``): besides the seed recipe as written (plain PyTorch, 10 epochs),
   each twin also trains with that recipe (batch 64, Adam 1e-3 constant, Normalize((0.5,), (0.5,)),
   10 epochs): seed / twin-with-seed-recipe is the *framework* factor (framework and data pipeline),
   twin-with-seed-recipe / twin is the *recipe* factor, and their product the total.
5. **Profile** (``--profile``): after its first burst each twin traces a few steady steps with its
   profiler (:mod:`diptych.backends.torch.profile`, :mod:`diptych.backends.jax.profile`); the
   report puts their top operations side by side. Traces: ``OUT/profile/<contestant>/``.
6. **MFU ceiling** (``--profile``, MLPs and CNNs): each twin also times every conv and dense layer's
   forward + backward *alone*, at the step's batch, with its own kernels. A step can take no less
   than their sum, so the step's FLOPs over that sum bound its MFU: the report gives the bound beside
   the MFU reached, and the share of the step spent outside those kernels.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from diptych.commands.report import write_report
from diptych.commands.summary import BASELINE, SEED_SUFFIX, summarize
from diptych.errors import DiptychError
from diptych.records import write_json
from diptych.tasks import choose_augment, get_task

BASELINE_MODULE = "diptych.cookbook.seed_baseline"  # the seed article's recipe, as written (torch)
# The seed recipe, as diptych run overrides: a twin trained this way isolates the framework from the recipe.
SEED_RECIPE = {
    "epochs": 10,
    "batch_size": 64,
    "lr": 1e-3,
    "optimizer": "adam",
    "schedule": "constant",
    "label_smoothing": 0.0,
}
SEED_NORMALIZE = "half"  # Normalize((0.5,), (0.5,)) after ToTensor (see diptych.data.datasets.load_dataset)
MNIST_TRAIN = 60_000  # the seed baseline's training set (MNIST only)
PROFILE_STEPS = 10  # steady steps traced per twin with --profile
EVALS_PER_EPOCH = 10  # the default --eval-every: about ten evaluations per epoch, until the target


def contestant_specs(frameworks: list[str], precisions: list[str], baseline: bool) -> dict[str, dict]:
    """``{label: {framework, precision, recipe}}`` in run order: the twins with diptych's recipe in each
    precision, then (``baseline``) the twins with the seed recipe and the seed baseline itself."""
    specs = {}
    for prec in precisions:
        for fw in frameworks:
            specs[fw + ("" if prec == "fp32" else f" {prec}")] = {
                "framework": fw,
                "precision": prec,
                "recipe": "diptych",
            }
    if baseline:
        for fw in frameworks:
            specs[fw + SEED_SUFFIX] = {"framework": fw, "precision": "fp32", "recipe": "seed"}
        specs[BASELINE] = {"framework": BASELINE, "precision": "fp32", "recipe": "seed"}
    return specs


def _apply_recipe(task, recipe: str):
    """The task with the seed recipe's optimizer, schedule, batch and epochs when ``recipe == "seed"``."""
    return task.with_overrides(**SEED_RECIPE) if recipe == "seed" else task


def interleaved(contestants: list[str], repeats: int) -> list[tuple[int, str]]:
    """The run order: every contestant once per round, rounds repeated (A B A B ...)."""
    return [(r, c) for r in range(repeats) for c in contestants]


# ----------------------------------------------------------------------------- one burst (subprocess)


def burst(
    task_name: str,
    framework: str,
    seconds: float,
    data_dir: str | None,
    seed: int = 0,
    precision: str = "fp32",
    augment: str | None = None,
    recipe: str = "diptych",
    device: str = "auto",
    profile_dir: str | None = None,
    limit: int | None = None,
) -> dict:
    """Runs inside a fresh process: first-step time, steady throughput, eval throughput, matmul peak;
    with an image ``augment`` (OPS or ``default``) also the steady throughput with augmentation on;
    with ``profile_dir`` also a trace of :data:`PROFILE_STEPS` steady steps and their top operations."""
    from diptych.backends import load_backend
    from diptych.data.augment import augmenter_for
    from diptych.driver import train_batches
    from diptych.records import peak_rss_mb

    task = _apply_recipe(choose_augment(get_task(task_name), augment), recipe)
    task, data, facts = task.objective.load(task, data_dir, dataset=_dataset(task, data_dir, recipe, limit))
    backend = load_backend(framework)
    batches = train_batches(data, task.budget.batch_size, seed)
    stream = (idx for epoch in range(10**9) for idx in batches.epoch(epoch))
    world = backend.distributed.init(device, task.budget.batch_size)  # the same device set-up as `diptych train`
    trainer = backend.train.Trainer(
        task, seed, total_steps=10**6, precision=precision, device=world.device, world=world
    )

    idx = next(stream)
    t0 = time.perf_counter()
    trainer.losses_to_numpy([trainer.train_step(data.x_train[idx], data.y_train[idx])])
    first = time.perf_counter() - t0
    steps, t1 = 0, time.perf_counter()
    while steps < 10 or time.perf_counter() - t1 < seconds:
        pending = []
        for _ in range(10):  # sync every 10 steps: JAX dispatches asynchronously
            idx = next(stream)
            pending.append(trainer.train_step(data.x_train[idx], data.y_train[idx]))
            steps += 1
        trainer.losses_to_numpy(pending)
    train_sps = steps * task.budget.batch_size / (time.perf_counter() - t1)
    profile = _profile_steps(backend.__name__, trainer, data, stream, profile_dir) if profile_dir else None
    if profile:
        profile["kernels"] = _kernels(backend.__name__, task, precision, world)
    augmenter = augmenter_for(task, data, seed) if augment is not None else None
    aug_sps = _augmented_rate(trainer, data, stream, augmenter, seconds, task.budget.batch_size) if augmenter else None
    head = dataclasses.replace(data, x_test=data.x_test[:1000], y_test=data.y_test[:1000])
    task.objective.evaluate(trainer, head, facts)  # compile the eval path outside the timing
    t2 = time.perf_counter()
    task.objective.evaluate(trainer, data, facts)
    eval_sps = len(data.y_test) / (time.perf_counter() - t2)
    return {
        "framework": framework,
        "compile_seconds": first,
        "train_samples_per_second": train_sps,
        "eval_samples_per_second": eval_sps,
        "peak_rss_mb": peak_rss_mb(),
        "matmul_gflops": backend.train.matmul_gflops(),
        "versions": backend.train.versions(),
        "device": backend.train.device_name(),
        **({"augment": task.augment.describe(), "augmented_samples_per_second": aug_sps} if aug_sps else {}),
        **({"profile": profile} if profile else {}),
    }


def _dataset(task, data_dir: str | None, recipe: str, limit: int | None = None):
    """The seed recipe's data (pixels to [-1, 1]) for a twin trained with it; ``None``: the task's own.
    ``limit``: only the first N samples of each split (quick checks of the machinery, not measurements)."""
    if recipe != "seed" and not limit:
        return None
    from diptych.data import load_dataset

    if recipe == "seed":
        data = load_dataset(task.dataset, data_dir, normalize=SEED_NORMALIZE)
    else:
        _, data, _ = task.objective.load(task, data_dir)
    if limit:
        data = dataclasses.replace(
            data,
            x_train=data.x_train[:limit],
            y_train=data.y_train[:limit],
            x_test=data.x_test[:limit],
            y_test=data.y_test[:limit],
        )
    return data


def _profile_steps(package: str, trainer, data, stream, profile_dir: str) -> dict:
    """Trace :data:`PROFILE_STEPS` steady steps (already compiled) and rank their operations."""
    import importlib

    profiler = importlib.import_module(f"{package}.profile")
    Path(profile_dir).mkdir(parents=True, exist_ok=True)
    handle = profiler.start(profile_dir)
    t0 = time.perf_counter()
    pending = []
    for _ in range(PROFILE_STEPS):
        idx = next(stream)
        pending.append(trainer.train_step(data.x_train[idx], data.y_train[idx]))
    trainer.losses_to_numpy(pending)
    wall = time.perf_counter() - t0
    profiler.stop(handle)
    return {
        "dir": str(profile_dir),
        "steps": PROFILE_STEPS,
        "step_ms": round(1000 * wall / PROFILE_STEPS, 3),
        "top_ops": profiler.top_ops(profile_dir, PROFILE_STEPS, wall),
    }


def _kernels(package: str, task, precision: str, world) -> dict | None:
    """Each conv and dense layer's forward + backward timed alone, at the step's batch (``None`` for
    models without separate layers): ``{batch, ms, layers: [{name, ms, gflops}]}``. Their sum is the
    least time a step could take with these kernels, so the step's FLOPs over it bound the MFU."""
    import importlib

    from diptych.flops import layers

    ls = layers(task.model)
    if not ls:
        return None
    profiler = importlib.import_module(f"{package}.profile")
    batch = task.budget.batch_size
    ms = profiler.kernel_ms(ls, batch, precision=precision, world=world)
    rows = [
        {
            "name": layer.name,
            "ms": round(ms[layer.name], 4),
            # forward, the weight gradient, and the input gradient where training computes it
            "gflops": layer.flops * (3 if layer.input_grad else 2) * batch / ms[layer.name] / 1e6,
        }
        for layer in ls
    ]
    return {"batch": batch, "ms": round(sum(ms.values()), 4), "layers": rows}


def train_run(
    task_name: str,
    framework: str,
    out: str,
    data_dir: str | None,
    precision: str,
    recipe: str,
    device: str,
    eval_every: int | None,
    augment: str | None = None,
    limit: int | None = None,
    epochs: int | None = None,
) -> dict:
    """Runs inside a fresh process: one full training run (``diptych train``'s driver) with diptych's or
    the seed recipe, evaluating every ``eval_every`` steps (``None``: ten times per epoch). ``limit`` and
    ``epochs`` shrink the run for quick checks."""
    import math

    from diptych.driver import RunConfig, train_and_evaluate

    task = _apply_recipe(choose_augment(get_task(task_name), augment), recipe)
    dataset = _dataset(task, data_dir, recipe, limit)
    if eval_every is None:
        n = len(dataset.y_train) if dataset is not None else _train_size(task, data_dir)
        eval_every = max(1, math.ceil(n / task.budget.batch_size / EVALS_PER_EPOCH))
    overrides = (SEED_RECIPE if recipe == "seed" else {}) | ({"epochs": epochs} if epochs else {})
    config = RunConfig(
        task_name,
        framework,
        precision=precision,
        device=device,
        data_dir=data_dir,
        augment=augment,
        progress=False,
        eval_every=eval_every,
        **overrides,
    )
    record = train_and_evaluate(config, out, dataset=dataset)
    record["recipe"] = recipe
    return record


def _train_size(task, data_dir: str | None) -> int:
    _, data, _ = task.objective.load(task, data_dir)
    return len(data.y_train)


def _augmented_rate(trainer, data, stream, augmenter, seconds: float, batch: int) -> float:
    """Steady training samples per second with the augmentation drawn and applied, first step untimed."""

    def step(n):
        idx = next(stream)
        x = data.x_train[idx]
        return trainer.train_step(x, data.y_train[idx], augmenter(x, 0, n))

    trainer.losses_to_numpy([step(0)])  # JAX traces the augmented step here
    steps, t0 = 0, time.perf_counter()
    while steps < 10 or time.perf_counter() - t0 < seconds:
        trainer.losses_to_numpy([step(steps + i) for i in range(10)])
        steps += 10
    return steps * batch / (time.perf_counter() - t0)


def _run(cmd: list[str]) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise DiptychError(f"benchmark step failed: {' '.join(cmd[1:4])}...: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _burst_cmd(
    task: str,
    spec: dict,
    seconds: float,
    data_dir: str | None,
    augment: str | None = None,
    device: str = "cpu",
    profile_dir: Path | None = None,
    limit: int | None = None,
) -> list[str]:
    contestant, precision = spec["framework"], spec["precision"]
    quick = ["--limit", str(limit)] if limit else []
    if contestant == BASELINE:
        cmd = [sys.executable, "-m", BASELINE_MODULE, "--burst", str(seconds), "--device", device, *quick]
    else:
        cmd = [
            sys.executable,
            "-m",
            "diptych.commands.bench",
            "--task",
            task,
            "--framework",
            contestant,
            "--seconds",
            str(seconds),
            "--precision",
            precision,
            "--recipe",
            spec["recipe"],
            "--device",
            device,
        ]
        cmd += ["--augment", augment] if augment else []
        cmd += ["--profile-dir", str(profile_dir)] if profile_dir else []
        cmd += quick
    return cmd + (["--data-dir", data_dir] if data_dir else [])


def _train_cmd(
    task: str,
    spec: dict,
    out: Path,
    data_dir: str | None,
    augment: str | None = None,
    device: str = "cpu",
    eval_every: int | None = None,
    limit: int | None = None,
    epochs: int | None = None,
) -> list[str]:
    contestant = spec["framework"]
    quick = (["--limit", str(limit)] if limit else []) + (["--epochs", str(epochs)] if epochs else [])
    if contestant == BASELINE:  # the recipe as written: all 10 epochs (its time to 99% comes from its evaluations)
        every = eval_every or -(-min(MNIST_TRAIN, limit or MNIST_TRAIN) // (64 * EVALS_PER_EPOCH))
        cmd = [sys.executable, "-m", BASELINE_MODULE, "--out", str(out), "--json", "--device", device, *quick]
        cmd += ["--eval-every", str(every)]
    else:
        cmd = [sys.executable, "-m", "diptych.commands.bench", "--train-run", "--task", task, "--framework", contestant]
        cmd += ["--out", str(out), "--precision", spec["precision"], "--recipe", spec["recipe"], "--device", device]
        cmd += ["--augment", augment] if augment else []
        cmd += ["--eval-every", str(eval_every)] if eval_every else []
        cmd += quick
    return cmd + (["--data-dir", data_dir] if data_dir else [])


# ----------------------------------------------------------------------------- the whole benchmark


def run_bench(
    task_name: str,
    frameworks: list[str],
    out: Path,
    repeats: int = 3,
    seconds: float = 3.0,
    baseline: bool = False,
    data_dir: str | None = None,
    train: bool = True,
    log=print,
    precision: str | list[str] = "fp32",
    augment: str | None = None,
    device: str = "cpu",
    eval_every: int | None = None,
    profile: bool = False,
    limit: int | None = None,
    epochs: int | None = None,
) -> dict:
    """The whole benchmark into ``out`` (bench.json, report.md/html). ``limit`` (first N samples of each
    split) and ``epochs`` (every contestant's, the seed baseline's too) shrink it to a quick check of the
    machinery: its numbers are then not the recipes' and measure nothing."""
    task = choose_augment(get_task(task_name), augment)  # a bad --augment fails here, before any burst
    if baseline and task.name != "mnist-cnn":
        raise DiptychError("--baseline is the seed MNIST CNN recipe: use it with the mnist-cnn task")
    if eval_every is not None and eval_every < 1:
        raise DiptychError(f"--eval-every {eval_every}: give a number of steps >= 1 (default: ten per epoch)")
    precisions = [precision] if isinstance(precision, str) else list(precision)
    specs = contestant_specs(frameworks, precisions, baseline)
    bursts: dict[str, list[dict]] = {c: [] for c in specs}
    for r, c in interleaved(list(specs), repeats):
        log(f"burst {r + 1}/{repeats}: {c}")
        aug = augment if c != BASELINE else None
        traced = out / "profile" / _folder(c) if profile and r == 0 and c != BASELINE else None
        bursts[c].append(_run(_burst_cmd(task.name, specs[c], seconds, data_dir, aug, device, traced, limit)))
    runs = {}
    if train:
        for c, spec in specs.items():
            log(f"training {c} to the end of its budget")
            aug = augment if c != BASELINE else None
            folder = out / "runs" / _folder(c)
            runs[c] = _run(_train_cmd(task.name, spec, folder, data_dir, aug, device, eval_every, limit, epochs))
    result = summarize(task.name, bursts, runs)
    result["precision"] = precisions if len(precisions) > 1 else precisions[0]
    result["device"] = device
    result["specs"] = specs
    if augment is not None:  # the augmentation's step cost: steady throughput without / with it, per twin
        result["augment"] = {
            "ops": task.augment.describe(),
            "slowdown": {
                c: round(
                    float(
                        np.median(
                            [
                                b["train_samples_per_second"] / b["augmented_samples_per_second"]
                                for b in bursts[c]
                                if b.get("augmented_samples_per_second")
                            ]
                            or [np.nan]
                        )
                    ),
                    3,
                )
                for c in frameworks
                if c in bursts
            },
        }
        log(
            "augmentation "
            + result["augment"]["ops"]
            + ": step time x"
            + ", x".join(f"{v} ({c})" for c, v in result["augment"]["slowdown"].items())
        )
    write_json(out / "bench.json", result)
    write_report(result, out)
    return result


def _folder(label: str) -> str:
    """A contestant's label as a folder name: ``torch (seed recipe)`` -> ``torch-seed-recipe``."""
    return "-".join(label.replace("(", " ").replace(")", " ").split())


def main(argv: list[str] | None = None) -> None:
    """Worker entry point: ``python -m diptych.commands.bench --task T --framework F`` prints one burst as JSON;
    with ``--train-run --out DIR`` one full training run's record instead."""
    p = argparse.ArgumentParser()
    p.add_argument("--task", required=True)
    p.add_argument("--framework", required=True)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--data-dir")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--augment")
    p.add_argument("--recipe", choices=("diptych", "seed"), default="diptych")
    p.add_argument("--device", default="auto")
    p.add_argument("--profile-dir")
    p.add_argument("--train-run", action="store_true")
    p.add_argument("--out")
    p.add_argument("--eval-every", type=int)
    p.add_argument("--limit", type=int)
    p.add_argument("--epochs", type=int)
    args = p.parse_args(argv)
    if args.train_run:
        record = train_run(
            args.task,
            args.framework,
            args.out,
            args.data_dir,
            args.precision,
            args.recipe,
            args.device,
            args.eval_every,
            args.augment,
            args.limit,
            args.epochs,
        )
    else:
        record = burst(
            args.task,
            args.framework,
            args.seconds,
            args.data_dir,
            precision=args.precision,
            augment=args.augment,
            recipe=args.recipe,
            device=args.device,
            profile_dir=args.profile_dir,
            limit=args.limit,
        )
    print(json.dumps(record))


if __name__ == "__main__":
    main()

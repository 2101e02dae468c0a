"""One contestant's measurement, in a fresh process (``python -m diptych.bench.worker``): a burst (first-step
time, steady training and evaluation throughput, matmul peak; optionally a trace, the kernels alone and the
augmented rate) or, with ``--train-run``, one full training run to the end of its budget. It prints one JSON
object; :mod:`diptych.bench.orchestrate` starts it and reads that line.
"""

from __future__ import annotations

import argparse
import json
import time

from diptych.bench.contestants import EVALS_PER_EPOCH, SEED_NORMALIZE, SEED_RECIPE, apply_recipe
from diptych.bench.measure import augmented_rate, decode_rate, kernels, profile_steps
from diptych.overrides import parse_sets
from diptych.tasks import choose_augment, get_task


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
    sets: tuple[str, ...] = (),
) -> dict:
    """Runs inside a fresh process: first-step time, steady throughput, eval throughput, matmul peak;
    with an image ``augment`` (OPS or ``default``) also the steady throughput with augmentation on;
    with ``profile_dir`` also a trace of :data:`PROFILE_STEPS` steady steps and their top operations."""
    from diptych.backends import load_backend
    from diptych.data.augment import augmenter_for
    from diptych.driver import train_batches
    from diptych.records import peak_rss_mb

    task = get_task(task_name).with_model_overrides(parse_sets(sets))  # --set: the model's sizes
    task = apply_recipe(choose_augment(task, augment), recipe)
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
    profile = profile_steps(backend.profile, trainer, data, stream, profile_dir) if profile_dir else None
    if profile:
        profile["kernels"] = kernels(backend.profile, task, precision, world)
    augmenter = augmenter_for(task, data, seed) if augment is not None else None
    aug_sps = augmented_rate(trainer, data, stream, augmenter, seconds, task.budget.batch_size) if augmenter else None
    head = data.head(len(data.y_train), 1000)
    task.objective.evaluate(trainer, head, facts)  # compile the eval path outside the timing
    t2 = time.perf_counter()
    task.objective.evaluate(trainer, data, facts)
    eval_sps = len(data.y_test) / (time.perf_counter() - t2)
    decode = {"decode_tokens_per_second": decode_rate(trainer, data)} if task.model.decodes_with_cache else {}
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
        **decode,
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
    return data.head(limit) if limit else data


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
    sets: tuple[str, ...] = (),
) -> dict:
    """Runs inside a fresh process: one full training run (``diptych train``'s driver) with diptych's or
    the seed recipe, evaluating every ``eval_every`` steps (``None``: ten times per epoch). ``limit`` and
    ``epochs`` shrink the run for quick checks."""
    import math

    from diptych.driver import RunConfig, train_and_evaluate

    task = apply_recipe(choose_augment(get_task(task_name), augment), recipe)
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
        sets=tuple(sets),
        **overrides,
    )
    record = train_and_evaluate(config, out, dataset=dataset)
    record["recipe"] = recipe
    return record


def _train_size(task, data_dir: str | None) -> int:
    _, data, _ = task.objective.load(task, data_dir)
    return len(data.y_train)


def main(argv: list[str] | None = None) -> None:
    """Worker entry point: ``python -m diptych.bench.worker --task T --framework F`` prints one burst as JSON;
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
    p.add_argument("--set", dest="sets", action="append", default=[])
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
            args.sets,
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
            sets=args.sets,
        )
    print(json.dumps(record))


if __name__ == "__main__":
    main()

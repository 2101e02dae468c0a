"""``diptych bench``: an honest side-by-side benchmark of the twins (and the seed baseline).

Method:

1. **Interleaved bursts.** For ``r`` in ``1..R``, each contestant in turn (A B C A B C ...) runs a
   fresh process that builds the model, times the first step (tracing/compilation included),
   then trains for ``--burst`` seconds at steady state, then evaluates the test set, and runs a
   matmul probe. Machine drift (this host class has slowed multi-threaded work 4-15x for minutes
   at a time) then hits every contestant alike; the report gives medians and spread.
2. **Time to target.** Each contestant trains with its own defaults to the end of its budget,
   one after the other (never two at once: two framework processes on two cores slow each other
   by an order of magnitude). Time to target = wall time (compile included) of the first epoch
   whose test accuracy reaches the task's target.
3. **MFU.** Achieved FLOP/s = steady samples/s x analytic training FLOPs per sample
   (:mod:`diptych.flops`); MFU = that / the best float32 matmul rate measured in the same run.
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
from diptych.commands.summary import BASELINE, summarize
from diptych.errors import DiptychError
from diptych.records import write_json
from diptych.tasks import choose_augment, get_task

BASELINE_MODULE = "diptych.cookbook.seed_baseline"  # the seed article's recipe, as written (torch)


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
) -> dict:
    """Runs inside a fresh process: first-step time, steady throughput, eval throughput, matmul peak;
    with an image ``augment`` (OPS or ``default``) also the steady throughput with augmentation on."""
    from diptych.backends import load_backend
    from diptych.data.augment import augmenter_for
    from diptych.driver import train_batches
    from diptych.records import peak_rss_mb

    task = choose_augment(get_task(task_name), augment)
    task, data, facts = task.objective.load(task, data_dir)
    backend = load_backend(framework)
    batches = train_batches(data, task.budget.batch_size, seed)
    stream = (idx for epoch in range(10**9) for idx in batches.epoch(epoch))
    world = backend.distributed.init("auto", task.budget.batch_size)  # the same device set-up as `diptych train`
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
    }


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
    task: str, contestant: str, seconds: float, data_dir: str | None, precision: str, augment: str | None = None
) -> list[str]:
    if contestant == BASELINE:
        cmd = [sys.executable, "-m", BASELINE_MODULE, "--burst", str(seconds)]
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
        ]
        cmd += ["--augment", augment] if augment else []
    return cmd + (["--data-dir", data_dir] if data_dir else [])


def _train_cmd(
    task: str, contestant: str, out: Path, data_dir: str | None, precision: str, augment: str | None = None
) -> list[str]:
    if contestant == BASELINE:
        cmd = [sys.executable, "-m", BASELINE_MODULE, "--out", str(out), "--json"]
    else:
        cmd = [
            sys.executable,
            "-m",
            "diptych",
            "train",
            task,
            "--framework",
            contestant,
            "--out",
            str(out),
            "--json",
            "--no-progress",
            "--precision",
            precision,
        ]
        cmd += ["--augment", augment] if augment else []
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
    precision: str = "fp32",
    augment: str | None = None,
) -> dict:
    task = choose_augment(get_task(task_name), augment)  # a bad --augment fails here, before any burst
    if baseline and task.name != "mnist-cnn":
        raise DiptychError("--baseline is the seed MNIST CNN recipe: use it with the mnist-cnn task")
    contestants = frameworks + ([BASELINE] if baseline else [])
    bursts: dict[str, list[dict]] = {c: [] for c in contestants}
    for r, c in interleaved(contestants, repeats):
        log(f"burst {r + 1}/{repeats}: {c}")
        aug = augment if c != BASELINE else None
        bursts[c].append(_run(_burst_cmd(task.name, c, seconds, data_dir, precision, aug)))
    runs = {}
    if train:
        for c in contestants:
            log(f"training {c} to the end of its budget")
            runs[c] = _run(
                _train_cmd(task.name, c, out / "runs" / c, data_dir, precision, augment if c != BASELINE else None)
            )
    result = summarize(task.name, bursts, runs)
    result["precision"] = precision
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


def main(argv: list[str] | None = None) -> None:
    """Worker entry point: ``python -m diptych.commands.bench --task T --framework F`` prints one burst as JSON."""
    p = argparse.ArgumentParser()
    p.add_argument("--task", required=True)
    p.add_argument("--framework", required=True)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--data-dir")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--augment")
    args = p.parse_args(argv)
    print(
        json.dumps(
            burst(
                args.task, args.framework, args.seconds, args.data_dir, precision=args.precision, augment=args.augment
            )
        )
    )


if __name__ == "__main__":
    main()

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

from diptych.commands.report import write_report
from diptych.commands.summary import BASELINE, summarize
from diptych.errors import DiptychError
from diptych.records import write_json
from diptych.tasks import get_task

BASELINE_MODULE = "diptych.cookbook.seed_baseline"  # the seed article's recipe, as written (torch)


def interleaved(contestants: list[str], repeats: int) -> list[tuple[int, str]]:
    """The run order: every contestant once per round, rounds repeated (A B A B ...)."""
    return [(r, c) for r in range(repeats) for c in contestants]


# ----------------------------------------------------------------------------- one burst (subprocess)


def burst(
    task_name: str, framework: str, seconds: float, data_dir: str | None, seed: int = 0, precision: str = "fp32"
) -> dict:
    """Runs inside a fresh process: first-step time, steady throughput, eval throughput, matmul peak."""
    from diptych.backends import load_backend
    from diptych.driver import train_batches
    from diptych.records import peak_rss_mb

    task = get_task(task_name)
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
    }


def _run(cmd: list[str]) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise DiptychError(f"benchmark step failed: {' '.join(cmd[1:4])}...: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _burst_cmd(task: str, contestant: str, seconds: float, data_dir: str | None, precision: str) -> list[str]:
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
    return cmd + (["--data-dir", data_dir] if data_dir else [])


def _train_cmd(task: str, contestant: str, out: Path, data_dir: str | None, precision: str) -> list[str]:
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
) -> dict:
    task = get_task(task_name)
    if baseline and task.name != "mnist-cnn":
        raise DiptychError("--baseline is the seed MNIST CNN recipe: use it with the mnist-cnn task")
    contestants = frameworks + ([BASELINE] if baseline else [])
    bursts: dict[str, list[dict]] = {c: [] for c in contestants}
    for r, c in interleaved(contestants, repeats):
        log(f"burst {r + 1}/{repeats}: {c}")
        bursts[c].append(_run(_burst_cmd(task.name, c, seconds, data_dir, precision)))
    runs = {}
    if train:
        for c in contestants:
            log(f"training {c} to the end of its budget")
            runs[c] = _run(_train_cmd(task.name, c, out / "runs" / c, data_dir, precision))
    result = summarize(task.name, bursts, runs)
    result["precision"] = precision
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
    args = p.parse_args(argv)
    print(json.dumps(burst(args.task, args.framework, args.seconds, args.data_dir, precision=args.precision)))


if __name__ == "__main__":
    main()

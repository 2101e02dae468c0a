"""The whole benchmark: each contestant's bursts interleaved over ``repeats`` rounds, then each one's training
run to the end of its budget, one after the other; every measurement in a fresh worker process
(:mod:`diptych.bench.worker`). The results go to ``bench.json`` and a report (:mod:`diptych.bench.report`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from diptych.bench.contestants import (
    BASELINE_MODULE,
    EVALS_PER_EPOCH,
    MNIST_TRAIN,
    contestant_specs,
    folder,
    interleaved,
)
from diptych.bench.report import write_report
from diptych.bench.summary import BASELINE, summarize
from diptych.errors import DiptychError
from diptych.overrides import overrides_for_run
from diptych.records import write_json
from diptych.tasks import choose_augment, get_task


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
            "diptych.bench.worker",
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
        cmd = [sys.executable, "-m", "diptych.bench.worker", "--train-run", "--task", task, "--framework", contestant]
        cmd += ["--out", str(out), "--precision", spec["precision"], "--recipe", spec["recipe"], "--device", device]
        cmd += ["--augment", augment] if augment else []
        cmd += ["--eval-every", str(eval_every)] if eval_every else []
        cmd += quick
    return cmd + (["--data-dir", data_dir] if data_dir else [])


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
    sets: tuple[str, ...] = (),
) -> dict:
    """The whole benchmark into ``out`` (bench.json, report.md/html). ``limit`` (first N samples of each
    split) and ``epochs`` (every contestant's, the seed baseline's too) shrink it to a quick check of the
    machinery: its numbers are then not the recipes' and measure nothing."""
    task = choose_augment(get_task(task_name), augment)  # a bad --augment fails here, before any burst
    overrides = overrides_for_run(task.model, sets, None)  # and a bad --set
    if baseline and task.name != "mnist-cnn":
        raise DiptychError("--baseline is the seed MNIST CNN recipe: use it with the mnist-cnn task")
    if baseline and sets:
        raise DiptychError("--baseline runs the seed recipe's model as written: drop --set, or drop --baseline")
    model = [a for s in sets for a in ("--set", s)]  # the twins' workers build the model with them
    if eval_every is not None and eval_every < 1:
        raise DiptychError(f"--eval-every {eval_every}: give a number of steps >= 1 (default: ten per epoch)")
    precisions = [precision] if isinstance(precision, str) else list(precision)
    specs = contestant_specs(frameworks, precisions, baseline)
    bursts: dict[str, list[dict]] = {c: [] for c in specs}
    for r, c in interleaved(list(specs), repeats):
        log(f"burst {r + 1}/{repeats}: {c}")
        aug = augment if c != BASELINE else None
        traced = out / "profile" / folder(c) if profile and r == 0 and c != BASELINE else None
        bursts[c].append(_run(_burst_cmd(task.name, specs[c], seconds, data_dir, aug, device, traced, limit) + model))
    runs = {}
    if train:
        for c, spec in specs.items():
            log(f"training {c} to the end of its budget")
            aug = augment if c != BASELINE else None
            run_dir = out / "runs" / folder(c)
            cmd = _train_cmd(task.name, spec, run_dir, data_dir, aug, device, eval_every, limit, epochs)
            runs[c] = _run(cmd + model)
    result = summarize(task.name, bursts, runs, overrides)
    result["precision"] = precisions if len(precisions) > 1 else precisions[0]
    result["device"] = device
    result["specs"] = specs
    if augment is not None:  # the augmentation's step cost: steady throughput without / with it, per twin
        result["augment"] = {"ops": task.augment.describe(), "slowdown": _slowdown(bursts, frameworks)}
        costs = ", x".join(f"{v} ({c})" for c, v in result["augment"]["slowdown"].items())
        log(f"augmentation {result['augment']['ops']}: step time x{costs}")
    write_json(out / "bench.json", result)
    write_report(result, out)
    return result


def _slowdown(bursts: dict[str, list[dict]], frameworks: list[str]) -> dict[str, float]:
    """Per twin, the median over its bursts of steady samples/s without augmentation over with it."""
    out = {}
    for c in (c for c in frameworks if c in bursts):
        ratios = [
            b["train_samples_per_second"] / b["augmented_samples_per_second"]
            for b in bursts[c]
            if b.get("augmented_samples_per_second")
        ]
        out[c] = round(float(np.median(ratios or [np.nan])), 3)
    return out

"""Training throughput with and without one competing busy process: does a twin collapse on a shared machine?

Each measurement is a fresh process that builds the twin's trainer for TASK (random batches of the
task's shape and batch size), warms up, then trains for ``--seconds`` and reports steady samples/s.
For every (task, twin, setting) the runs alternate between a quiet machine and one with a competing
process spinning on one core (pure Python, ``while True: pass``), the order flipping every round,
and the table gives the medians and the slowdown ratio quiet / loaded. Aim: <= 2x.

Settings: ``policy`` is what diptych does by default (the torch twin picks its intra-op threads by the
work in a step, with OpenMP's passive wait; JAX one XLA:CPU device per core); the others pin one knob
to show what the policy avoids: ``torch:threads=cores+OMPDEFAULT`` (every core with libgomp's default
wait: diptych before this policy), ``torch:threads=1+ACTIVE``, ``jax:JAX_NUM_CPU_DEVICES=1``,
``jax:XLA_FLAGS=--xla_cpu_multi_thread_eigen=false``.

    python benchmarks/contention.py --tasks mnist1d-cnn,mnist-cnn --repeats 3 --seconds 3
    python benchmarks/contention.py --tasks mnist1d-cnn --settings torch:policy,torch:threads=2+ACTIVE

On a machine that other programs load as well the numbers are noisy: quote ``uptime`` with them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SPIN = "while True: pass"
DEFAULT_SETTINGS = "torch:policy,torch:threads=cores+OMPDEFAULT,torch:threads=1,jax:policy,jax:JAX_NUM_CPU_DEVICES=1"


def worker(task_name: str, framework: str, threads: str, seconds: float) -> dict:
    """In the measuring process: steady samples/s of ``seconds`` of training (after a warm-up)."""
    if os.environ.pop("CONTENTION_OMP_DEFAULT", None):  # torch loads before diptych can set OpenMP's wait policy
        import torch  # noqa: F401
    import numpy as np

    from diptych.backends import load_backend
    from diptych.launch import usable_cores
    from diptych.tasks import get_task

    task = get_task(task_name)
    task = task.objective.sized(task)  # a language model: the default corpus's vocabulary
    backend = load_backend(framework)
    batch = task.budget.batch_size
    world = backend.distributed.init("cpu", batch)
    trainer = backend.train.Trainer(task, 0, 10**6, world=world)
    if threads != "policy":  # override the policy after the trainer applied it
        import torch

        torch.set_num_threads(usable_cores() if threads == "cores" else int(threads))
    rng = np.random.default_rng(0)
    if task.dataset == "text":
        x = rng.integers(0, task.model.vocab, (batch, task.model.seq_len)).astype(np.int32)
        y = rng.integers(0, task.model.vocab, (batch, task.model.seq_len)).astype(np.int32)
    else:
        x = rng.standard_normal((batch, *task.model.input_shape())).astype(np.float32)
        y = rng.integers(0, task.model.num_classes, batch).astype(np.int32)

    def run(steps: int) -> None:
        trainer.losses_to_numpy([trainer.train_step(x, y) for _ in range(steps)])  # waits for the device

    run(5)  # compile and warm up
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        run(20)  # the driver's sync interval
        steps += 20
    rate = steps * batch / (time.perf_counter() - t0)
    return {"samples_per_second": rate, "runtime": backend.train.runtime("cpu")}


def measure(task: str, setting: str, seconds: float, loaded: bool) -> float:
    """One fresh measuring process, with a spinning competitor when ``loaded``."""
    framework, _, knobs = setting.partition(":")
    env, threads = dict(os.environ), "policy"
    for knob in knobs.split("+"):
        key, _, value = knob.partition("=")
        if key == "threads":
            threads = value
        elif key == "ACTIVE":
            env["OMP_WAIT_POLICY"] = "ACTIVE"
        elif key == "OMPDEFAULT":  # libgomp's own default (spin a while, then sleep): diptych's before this policy
            env["CONTENTION_OMP_DEFAULT"] = "1"
        elif key and key != "policy":
            env[key] = value
    spinner = subprocess.Popen([sys.executable, "-c", SPIN]) if loaded else None
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--worker", task, framework, threads, str(seconds)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    return json.loads(out.strip().splitlines()[-1])["samples_per_second"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default="mnist1d-cnn,mnist-cnn")
    p.add_argument("--settings", default=DEFAULT_SETTINGS, help="comma list of TWIN:KNOB[+KNOB] (see the docstring)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--worker", nargs=4, metavar=("TASK", "TWIN", "THREADS", "SECONDS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        task, framework, threads, seconds = args.worker
        print(json.dumps(worker(task, framework, threads, float(seconds))))
        return
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    rates: dict[tuple[str, str, bool], list[float]] = {}
    print(f"load before: {os.getloadavg()[0]:.2f} (1-min average), {os.cpu_count()} cores", flush=True)
    for r in range(args.repeats):
        for task in args.tasks.split(","):
            for setting in settings:
                for loaded in (False, True) if r % 2 == 0 else (True, False):  # alternate the order
                    rate = measure(task, setting, args.seconds, loaded)
                    rates.setdefault((task, setting, loaded), []).append(rate)
                    print(f"round {r + 1} {task} {setting} {'loaded' if loaded else 'quiet'}: {rate:,.0f}", flush=True)
    print(f"\nload after: {os.getloadavg()[0]:.2f}; medians of {args.repeats} interleaved rounds, samples/s")
    print(f"{'task':<14}{'setting':<36}{'quiet':>10}{'loaded':>10}{'slowdown':>10}")
    for task in args.tasks.split(","):
        for setting in settings:
            quiet = statistics.median(rates[task, setting, False])
            loaded = statistics.median(rates[task, setting, True])
            print(f"{task:<14}{setting:<36}{quiet:>10,.0f}{loaded:>10,.0f}{quiet / loaded:>9.2f}x")


if __name__ == "__main__":
    main()

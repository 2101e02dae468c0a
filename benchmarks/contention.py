"""Training throughput with and without one competing busy process: does a twin collapse on a shared machine?

For each (task, twin, setting) a fresh process builds the twin's trainer for TASK (random batches of the
task's shape and batch size), warms up, then measures steady samples/s over ``--seconds`` of training
``--repeats`` times on a quiet machine and as often with a competing process spinning on one core
(pure Python, ``while True: pass``), alternating, the order flipping every pair, so that load from
other programs hits both alike. The table gives the medians and the slowdown quiet / loaded. Aim: <= 2x.

Settings: ``policy`` is what diptych does by default (the torch twin picks its intra-op threads by the
work in a step, waits at barriers with a short spin, and its ThreadGovernor drops to one thread while
another process is busy; JAX one XLA:CPU device per core); the others pin knobs to show what the policy
avoids (``threads=N`` fixes the count and turns the governor off): ``torch:OMP_WAIT_POLICY=PASSIVE+threads=cores``
(sleep at once on every core: diptych's policy before the governor), ``torch:GOMP_SPINCOUNT=20000+threads=cores``
(the short spin on fixed threads, no governor),
``torch:threads=cores+OMPDEFAULT`` (every core with libgomp's default wait: diptych before any policy),
``torch:threads=1+ACTIVE``, ``jax:JAX_NUM_CPU_DEVICES=1``, ``jax:XLA_FLAGS=--xla_cpu_multi_thread_eigen=false``.

    python benchmarks/contention.py --tasks mnist1d-cnn,mnist-cnn --repeats 3 --seconds 2
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
SYNC = 5  # steps between waits for the device (the driver's is 20; fewer keep a collapsed run's chunks short)
DEFAULT_SETTINGS = ",".join(
    [
        "torch:policy",
        "torch:OMP_WAIT_POLICY=PASSIVE+threads=cores",
        "torch:GOMP_SPINCOUNT=20000+threads=cores",
        "torch:threads=1",
        "jax:policy",
        "jax:JAX_NUM_CPU_DEVICES=1",
    ]
)


def worker(task_name: str, framework: str, threads: str, seconds: float, repeats: int) -> dict:
    """In the measuring process: after a warm-up, ``repeats`` pairs of ``seconds`` of training, one quiet and
    one with a spinning competitor (the order flipping every pair); the samples/s of each."""
    if os.environ.pop("CONTENTION_OMP_DEFAULT", None):  # torch loads before diptych can set OpenMP's wait policy
        import torch  # noqa: F401
    import numpy as np

    from diptych.backends import load_backend
    from diptych.launch import usable_cores
    from diptych.records import runtime
    from diptych.tasks import get_task

    task = get_task(task_name)
    task = task.objective.sized(task)  # a language model: the default corpus's vocabulary
    backend = load_backend(framework)
    batch = task.budget.batch_size
    world = backend.distributed.init("cpu", batch)
    trainer = backend.train.Trainer(task, 0, 10**6, world=world)
    if threads != "policy":  # override the policy after the trainer applied it (and keep it: no governor)
        import torch

        trainer.governor = None
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

    def rate() -> float:
        steps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            run(SYNC)
            steps += SYNC
        return steps * batch / (time.perf_counter() - t0)

    run(5)  # compile and warm up
    rates: dict[str, list[float]] = {"quiet": [], "loaded": []}
    for r in range(repeats):
        for loaded in (False, True) if r % 2 == 0 else (True, False):
            # Its own session: with the kernel's autogroup scheduling (sched_autogroup_enabled), a spinner in this
            # session would split this session's share of the CPU, not compete as another program does.
            spinner = subprocess.Popen([sys.executable, "-S", "-c", SPIN], start_new_session=True) if loaded else None
            try:
                if spinner is not None:
                    time.sleep(0.3)  # let it start spinning
                rates["loaded" if loaded else "quiet"].append(rate())
            finally:
                if spinner is not None:
                    spinner.kill()
                    spinner.wait()
    return rates | {"runtime": runtime(backend.train.runtime("cpu"))}  # as run.json records it


def measure(task: str, setting: str, seconds: float, repeats: int) -> dict:
    """One fresh measuring process for ``setting`` (``TWIN:KNOB+KNOB``)."""
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
    out = subprocess.run(
        [sys.executable, __file__, "--worker", task, framework, threads, str(seconds), str(repeats)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def _threads(runtime: dict) -> str:
    """What the measured process ran on: torch's threads and wait policy, or JAX's CPU devices."""
    if "threads" in runtime:
        policy, env = runtime["thread_policy"], runtime["env"]
        wait = f"{env.get('OMP_WAIT_POLICY', 'default')} spin={env.get('GOMP_SPINCOUNT', 'default')}"
        governor = f"adaptive={policy.get('adaptive')} switches={policy.get('switches', 0)}"
        return f"threads={runtime['threads']} wait={wait} {governor}"
    return f"cpu_devices={runtime['cpu_devices']}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default="mnist1d-cnn,mnist-cnn")
    p.add_argument("--settings", default=DEFAULT_SETTINGS, help="comma list of TWIN:KNOB[+KNOB] (see the docstring)")
    p.add_argument("--repeats", type=int, default=3, help="quiet/loaded pairs per process")
    p.add_argument("--rounds", type=int, default=1, help="processes per setting (the settings interleaved)")
    p.add_argument("--seconds", type=float, default=2.0, help="of training per measurement")
    p.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        task, framework, threads, seconds, repeats = args.worker
        print(json.dumps(worker(task, framework, threads, float(seconds), int(repeats))))
        return
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    rates: dict[tuple[str, str], dict[str, list[float]]] = {}
    print(f"load before: {os.getloadavg()[0]:.2f} (1-min average), {os.cpu_count()} cores", flush=True)
    for r in range(args.rounds):
        for task in tasks:
            for setting in settings:
                got = measure(task, setting, args.seconds, args.repeats)
                for k in ("quiet", "loaded"):
                    rates.setdefault((task, setting), {"quiet": [], "loaded": []})[k].extend(got[k])
                shown = "  ".join(f"{k} " + " ".join(f"{v:,.0f}" for v in got[k]) for k in ("quiet", "loaded"))
                print(f"round {r + 1} {task} {setting}: {shown}  {_threads(got['runtime'])}", flush=True)
    print(
        f"\nload after: {os.getloadavg()[0]:.2f}; medians of {args.rounds * args.repeats} interleaved pairs, samples/s"
    )
    print(f"{'task':<14}{'setting':<36}{'quiet':>10}{'loaded':>10}{'slowdown':>10}")
    for task in tasks:
        for setting in settings:
            quiet = statistics.median(rates[task, setting]["quiet"])
            loaded = statistics.median(rates[task, setting]["loaded"])
            print(f"{task:<14}{setting:<36}{quiet:>10,.0f}{loaded:>10,.0f}{quiet / loaded:>9.2f}x")


if __name__ == "__main__":
    main()

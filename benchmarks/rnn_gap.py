"""Where does the JAX twin lose to torch on the LSTMs (mnist-rnn, chars-lstm), and which formulation closes it?

Each variant runs in its own persistent worker process (compiled once); the parent asks them in
turn, round after round (rotating the order), for a burst of training steps of the real twin
(``Trainer.train_step``: forward, backward, clipping, Adam) on random batches of the task's shapes,
and prints medians of samples/s (wall clock), CPU ms per step (user + system, all threads), minor
page faults per step, and each JAX variant's ratio to torch. Only one worker runs at a time.

    python benchmarks/rnn_gap.py                          # both tasks, the main variants, both cores
    python benchmarks/rnn_gap.py --cores 1 --rounds 7     # one core each: steadier on a busy machine
    python benchmarks/rnn_gap.py --variants torch jax jax-autodiff jax-unroll4 jax-glibc-default
    python benchmarks/rnn_gap.py --profile mnist-rnn      # per-op decomposition of the JAX step

Variants: ``torch`` (its fused oneDNN LSTM); ``jax`` (the twin as it is); ``jax-before`` (the twin
before #18: autodiff scan, glibc's malloc defaults); ``jax-autodiff`` (the LSTM scan differentiated
by JAX, with the malloc settings); ``jax-unroll4`` (``lax.scan(unroll=4)``);
``jax-1dev`` (one XLA device instead of one per core); ``jax-glibc-default`` (glibc's malloc
defaults: see :mod:`diptych.allocator`); ``jax-env-malloc`` (the same malloc settings given through
the environment at process start); ``jax-eigen-dot`` (YNNPACK off: Eigen dots); ``jax-no-eigen-mt``.
Run it on a quiet machine: on a shared one, compare ratios and CPU ms, not absolute samples/s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(2**31 - 1)}
MALLOC_ENV["MALLOC_TOP_PAD_"] = str(256 << 20)
VARIANTS = {  # name: (framework, extra environment, formulation)
    "torch": ("torch", {}, None),
    "jax": ("jax", {}, None),
    "jax-autodiff": ("jax", {}, "autodiff"),
    "jax-unroll4": ("jax", {}, "unroll4"),
    "jax-1dev": ("jax", {"JAX_NUM_CPU_DEVICES": "1"}, None),
    # glibc's malloc defaults: any GLIBC_TUNABLES keeps diptych.allocator off (perturb=0 is the default itself).
    "jax-glibc-default": ("jax", {"GLIBC_TUNABLES": "glibc.malloc.perturb=0"}, None),
    "jax-before": ("jax", {"GLIBC_TUNABLES": "glibc.malloc.perturb=0"}, "autodiff"),  # the twin before #18
    "jax-env-malloc": ("jax", MALLOC_ENV, None),
    "jax-eigen-dot": ("jax", {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type="}, None),
    "jax-no-eigen-mt": ("jax", {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false"}, None),
}
DEFAULT_VARIANTS = ["torch", "jax", "jax-before", "jax-autodiff", "jax-glibc-default"]


def autodiff_call(self, x, reverse=False, carry=None):
    """The JAX LSTM layer before #18: one ``lax.scan`` differentiated by JAX (batch-major input)."""
    import jax
    import jax.numpy as jnp

    from diptych.backends.jax import ops

    xi = x @ self.w_ih[...] + self.b_ih[...]  # (B, T, 4H)
    w_hh, b_hh = self.w_hh[...], self.b_hh[...]

    def step(carry, xt):
        h, c, _ = ops._lstm_cell(xt + (carry[0] @ w_hh + b_hh), carry[1])
        return (h, c), h

    carry = self.initial_carry(x.shape[0], x.dtype) if carry is None else carry
    carry, ys = jax.lax.scan(step, carry, jnp.swapaxes(xi, 0, 1), reverse=reverse, unroll=ops.SCAN_UNROLL)
    return jnp.swapaxes(ys, 0, 1), carry


def make_task(name: str):
    import dataclasses

    from diptych.tasks import get_task

    task = get_task(name)
    if task.model.kind == "charlm":  # the corpus fills the vocabulary in; chars-lstm's default has 103
        task = dataclasses.replace(task, model=task.model.with_vocab(103))
    return task


def batches(task, n: int = 8):
    import numpy as np

    rng, b, spec = np.random.default_rng(0), task.budget.batch_size, task.model
    if spec.kind == "charlm":  # ids (B, T) -> next ids (B, T)
        return [(rng.integers(0, spec.vocab, (b, spec.seq_len), np.int32),) * 2 for _ in range(n)]
    return [(rng.random((b, *spec.input_shape()), np.float32), rng.integers(0, 10, b, np.int32)) for _ in range(n)]


def make_trainer(framework: str, formulation: str | None, task):
    from diptych.backends import load_backend

    backend = load_backend(framework)
    if formulation == "autodiff":
        backend.models.RecurrentLayer.__call__ = autodiff_call
    elif formulation == "unroll4":
        backend.ops.SCAN_UNROLL = 4
    world = backend.distributed.init("cpu", task.budget.batch_size)  # as the driver: one JAX device per core
    return backend.train.Trainer(task, 0, 10**6, world=world), world


def worker(variant: str, task_name: str) -> None:
    """Build, compile and warm up; then answer each line ``STEPS`` on stdin with one JSON line."""
    import resource

    import diptych  # noqa: F401  (first: it sets the allocator up before numpy starts threads)

    framework, _, formulation = VARIANTS[variant]
    task = make_task(task_name)
    trainer, world = make_trainer(framework, formulation, task)
    data = batches(task)
    for x, y in data[:3]:
        trainer.losses_to_numpy([trainer.train_step(x, y)])
    print(json.dumps({"ready": True, "devices": world.devices}), flush=True)
    for line in sys.stdin:
        steps = int(line)
        r0, t0, w0 = resource.getrusage(resource.RUSAGE_SELF), os.times(), time.perf_counter()
        for start in range(0, steps, 10):
            pending = [trainer.train_step(*data[(start + i) % len(data)]) for i in range(10)]
            trainer.losses_to_numpy(pending)
        w1, t1, r1 = time.perf_counter(), os.times(), resource.getrusage(resource.RUSAGE_SELF)
        n = -(-steps // 10) * 10
        out = {
            "samples_per_s": n * task.budget.batch_size / (w1 - w0),
            "cpu_ms": ((t1.user - t0.user) + (t1.system - t0.system)) / n * 1e3,
            "sys_ms": (t1.system - t0.system) / n * 1e3,
            "faults": (r1.ru_minflt - r0.ru_minflt) / n,
        }
        print(json.dumps(out), flush=True)


def start_worker(variant: str, task: str, cores: int | None) -> subprocess.Popen:
    env = dict(os.environ, **VARIANTS[variant][1])
    cpus = sorted(os.sched_getaffinity(0))[:cores] if cores else None
    proc = subprocess.Popen(
        [sys.executable, __file__, "--worker", variant, "--tasks", task],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
    )
    ready = json.loads(proc.stdout.readline())
    assert ready.get("ready"), ready
    return proc


def compare(task: str, variants: list[str], rounds: int, steps: int, cores: int | None) -> None:
    procs = {v: start_worker(v, task, cores) for v in variants}
    results: dict[str, list[dict]] = {v: [] for v in variants}
    loads = []
    for r in range(rounds):
        order = variants[r % len(variants) :] + variants[: r % len(variants)]  # rotate: no fixed position
        for v in order:
            procs[v].stdin.write(f"{steps}\n")
            procs[v].stdin.flush()
            results[v].append(json.loads(procs[v].stdout.readline()))
            time.sleep(0.2)  # let the previous worker's spinning threads go idle
        loads.append(os.getloadavg()[0])
        print(f"  round {r + 1}/{rounds} done, load {loads[-1]:.2f}", file=sys.stderr)
    for p in procs.values():
        p.stdin.close()
        p.wait()
    med = {v: {k: statistics.median(x[k] for x in xs) for k in xs[0]} for v, xs in results.items()}
    base = med.get("torch")
    print(
        f"\n{task}: medians of {rounds} interleaved rounds of {steps} steps, cores {cores or 'all'}, "
        f"1-min load {min(loads):.1f}-{max(loads):.1f}"
    )
    print(
        f"  {'variant':18s} {'samples/s':>10s} {'CPU ms/step':>12s} {'of it sys':>10s} {'faults/step':>12s}"
        f" {'wall ratio':>10s} {'CPU ratio':>10s}"
    )
    for v, m in med.items():
        wall = f"{m['samples_per_s'] / base['samples_per_s']:.2f}x" if base else "-"
        cpu = f"{base['cpu_ms'] / m['cpu_ms']:.2f}x" if base else "-"
        print(
            f"  {v:18s} {m['samples_per_s']:10,.0f} {m['cpu_ms']:12.1f} {m['sys_ms']:10.1f} {m['faults']:12,.0f}"
            f" {wall:>10s} {cpu:>10s}"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", default=["mnist-rnn", "chars-lstm"])
    p.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=list(VARIANTS))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=20, help="training steps per burst")
    p.add_argument("--cores", type=int, help="pin every worker to this many cores (default: all usable)")
    p.add_argument("--profile", metavar="TASK", help="per-op decomposition of the JAX step (see profile.py)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args.worker, args.tasks[0])
        return
    if args.profile:
        from rnn_gap_profile import profile

        profile(args.profile)
        return
    for task in args.tasks:
        compare(task, args.variants, args.rounds, args.steps, args.cores)


if __name__ == "__main__":
    main()

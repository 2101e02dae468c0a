"""How fast is the JAX twin's ``lax.scan`` recurrence, against the torch twin's fused kernel?

Interleaved bursts (A B C ... A B C ...) of training steps on the real task batches, in one
process per framework setting so threads never compete; prints samples/s medians and ratios.
Variants: torch's fused ``nn.GRU``/``nn.LSTM``, and the JAX twin with ``lax.scan(unroll=k)``.

    python benchmarks/scan_unroll.py --task mnist1d-gru --unroll 1 2 4 8 --repeats 3
    python benchmarks/scan_unroll.py --task chars-lstm --unroll 1 4

(The input projection ``x @ W_ih`` for all steps is already one batched matmul outside the
scan, and the gates share one fused ``h @ W_hh`` matmul; see backends/jax/models.py.)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def burst(task_name: str, variant: str, seconds: float) -> float:
    """Inside a fresh process: steady training samples/s of ``variant`` (``torch`` or ``jax:K``)."""
    from diptych.backends import load_backend
    from diptych.driver import train_batches
    from diptych.tasks import get_task

    framework, _, unroll = variant.partition(":")
    if framework == "jax":
        from diptych.backends.jax import ops

        ops.SCAN_UNROLL = int(unroll or 1)
    task = get_task(task_name)
    task, data, _ = task.objective.load(task)
    batches = train_batches(data, task.budget.batch_size, seed=0)
    stream = (idx for epoch in range(10**9) for idx in batches.epoch(epoch))
    trainer = load_backend(framework).train.Trainer(task, 0, total_steps=10**6)
    for _ in range(3):  # compile and warm up
        idx = next(stream)
        trainer.losses_to_numpy([trainer.train_step(data.x_train[idx], data.y_train[idx])])
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        pending = []
        for _ in range(10):
            idx = next(stream)
            pending.append(trainer.train_step(data.x_train[idx], data.y_train[idx]))
        trainer.losses_to_numpy(pending)
        steps += 10
    return steps * task.budget.batch_size / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="mnist1d-gru")
    p.add_argument("--unroll", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(burst(args.task, args.worker, args.seconds)))
        return
    variants = ["torch"] + [f"jax:{k}" for k in args.unroll]
    results: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(args.repeats):
        for v in variants:
            out = subprocess.run(
                [sys.executable, __file__, "--task", args.task, "--worker", v, "--seconds", str(args.seconds)],
                capture_output=True,
                text=True,
                check=True,
            )
            results[v].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1}: {v:8s} {results[v][-1]:10,.0f} samples/s", file=sys.stderr)
    base = statistics.median(results["torch"])
    print(f"{args.task}: median training samples/s over {args.repeats} interleaved rounds")
    for v, xs in results.items():
        med = statistics.median(xs)
        print(f"  {v:8s} {med:10,.0f}  (min {min(xs):,.0f}, max {max(xs):,.0f})  {med / base:.2f}x torch")


if __name__ == "__main__":
    main()

"""Per-op decomposition of the JAX LSTM training step for ``benchmarks/rnn_gap.py --profile TASK``.

Prints, in CPU ms per call (medians; run it pinned to one core, e.g. ``taskset -c 0``):

1. forward only, forward + backward, and the full training step, in each twin (JAX: as it is, and
   with the pre-#18 autodiff scan), and the JAX scan fully unrolled (straight-line code, no loop);
2. the cost of one iteration of an (almost) empty XLA while loop, and of the recurrent matmul
   ``h @ W_hh`` inside a loop, against torch's ``mm`` of the same shape;
3. the top operations (XLA thunks) of one JAX training step from a ``jax.profiler`` trace, with
   their share of the traced step (tracing inflates the small ones; read shares, not absolutes).
"""

from __future__ import annotations

import collections
import glob
import os
import statistics
import tempfile
import time

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_xprof_traceme=true").strip()

import diptych  # noqa: E402, F401  (first: the allocator set-up)
from rnn_gap import autodiff_call, batches, make_task  # noqa: E402


def cpu_ms(fn, calls: int = 10, repeats: int = 5) -> float:
    fn()
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        for _ in range(calls):
            fn()
        times.append((time.process_time() - t0) / calls * 1e3)
    return statistics.median(times)


def jax_parts(task, formulation: str | None) -> dict[str, float]:
    import jax
    import jax.numpy as jnp

    from diptych.backends.jax import models, ops, train

    old_call, old_unroll = models.RecurrentLayer.__call__, ops.SCAN_UNROLL
    if formulation == "autodiff":
        models.RecurrentLayer.__call__ = autodiff_call
    if formulation == "unrolled":
        ops.SCAN_UNROLL = task.model.seq_len
    train._JITTED.clear()  # the steps of another formulation, built earlier in this process
    try:
        trainer = train.Trainer(task, 0, 10**6)  # one device: the decomposition of one core's work
        x, y = batches(task, 1)[0]
        carry = trainer._carry(len(x))
        gd = trainer.graphdef
        fwd = jax.jit(lambda p, x, y, c: train.loss_fn(p, gd, x, y, c)[0])
        grad = jax.jit(jax.grad(lambda p, x, y, c: train.loss_fn(p, gd, x, y, c)[0]))
        out = {
            "forward": cpu_ms(lambda: fwd(trainer.params, x, y, carry).block_until_ready()),
            "forward+backward": cpu_ms(lambda: jax.block_until_ready(grad(trainer.params, x, y, carry))),
            "train step": cpu_ms(lambda: jnp.asarray(trainer.train_step(x, y)).block_until_ready()),
        }
    finally:
        models.RecurrentLayer.__call__, ops.SCAN_UNROLL = old_call, old_unroll
    return out


def torch_parts(task) -> dict[str, float]:
    import torch

    from diptych.backends.torch import train

    trainer = train.Trainer(task, 0, 10**6)
    x, y = batches(task, 1)[0]
    model = trainer.model
    xt = torch.as_tensor(x) if task.model.kind != "charlm" else torch.as_tensor(x).long()
    yt = torch.as_tensor(y).long()

    def loss():
        out = model(xt)
        logits = out[0] if isinstance(out, tuple) else out
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), yt.reshape(-1))

    def fwd():
        with torch.no_grad():
            loss()

    def fwd_bwd():
        model.zero_grad()
        loss().backward()

    return {
        "forward": cpu_ms(fwd),
        "forward+backward": cpu_ms(fwd_bwd),
        "train step": cpu_ms(lambda: float(trainer.train_step(x, y))),
    }


def loop_costs(task) -> None:
    import jax
    import jax.numpy as jnp
    import torch

    spec = task.model
    b, h, steps = task.budget.batch_size, spec.hidden, spec.seq_len
    zeros = jnp.zeros((b, h))
    empty = jax.jit(lambda c: jax.lax.fori_loop(0, 1000, lambda i, c: c + 1.0, c))
    per_iter = cpu_ms(lambda: empty(zeros).block_until_ready()) / 1000
    print(f"  an XLA while-loop iteration that only adds 1 to a ({b}, {h}) carry: {per_iter * 1e3:.1f} us")
    w = jnp.full((h, 4 * h), 0.01)
    loop = jax.jit(lambda c: jax.lax.fori_loop(0, steps, lambda i, c: (c @ w)[:, :h], c))
    mm_loop = cpu_ms(lambda: loop(zeros).block_until_ready()) / steps
    a, wt = torch.zeros(b, h), torch.full((h, 4 * h), 0.01)
    out = torch.empty(b, 4 * h)
    mm_torch = cpu_ms(lambda: torch.mm(a, wt, out=out), calls=200)
    flop = 2 * b * h * 4 * h
    print(
        f"  h @ W_hh ({b}x{h} @ {h}x{4 * h}) in an XLA loop: {mm_loop * 1e3:.0f} us per step "
        f"({flop / mm_loop / 1e6:.1f} GFLOP/s); torch.mm: {mm_torch * 1e3:.0f} us ({flop / mm_torch / 1e6:.1f} GFLOP/s)"
    )


def top_ops(task, top: int = 25) -> None:
    import jax
    import jax.numpy as jnp
    from jax._src.lib import _profile_data

    from diptych.backends.jax import train

    trainer = train.Trainer(task, 0, 10**6)
    x, y = batches(task, 1)[0]
    for _ in range(3):
        jnp.asarray(trainer.train_step(x, y)).block_until_ready()
    steps = 5
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d):
            for _ in range(steps):
                jnp.asarray(trainer.train_step(x, y)).block_until_ready()
        data = _profile_data.ProfileData.from_file(glob.glob(f"{d}/**/*.xplane.pb", recursive=True)[0])
    total, count, step_ns = collections.Counter(), collections.Counter(), 0
    for plane in data.planes:
        for line in plane.lines:
            for ev in line.events:
                if ev.name.startswith("ThunkExecutor") or ev.name.startswith("end:"):
                    continue
                if line.name.startswith("tf_XLA") and not ev.name.startswith("while"):
                    total[ev.name] += ev.duration_ns
                    count[ev.name] += 1
                elif ev.name.startswith("PjitFunction"):
                    step_ns += ev.duration_ns
    traced = sum(total.values())
    print(f"  traced thunks: {traced / steps / 1e6:.1f} ms per step (tracing inflates them); top {top}:")
    for name, ns in total.most_common(top):
        print(f"    {name:45s} {ns / steps / 1e6:8.2f} ms  x{count[name] / steps:4.0f}  {ns / traced:6.1%}")


def profile(task_name: str) -> None:
    task = make_task(task_name)
    spec = task.model
    print(
        f"{task_name}: LSTM {spec.hidden}, {spec.seq_len} steps, batch {task.budget.batch_size}; "
        f"CPU ms per call, {len(os.sched_getaffinity(0))} usable core(s), load {os.getloadavg()[0]:.1f}"
    )
    rows = {"torch": torch_parts(task), "jax": jax_parts(task, None)}
    rows["jax, autodiff scan"] = jax_parts(task, "autodiff")
    rows["jax, scan unrolled"] = jax_parts(task, "unrolled")
    print(f"  {'':20s} {'forward':>9s} {'fwd+bwd':>9s} {'step':>9s}  jax/torch step time")
    for k, r in rows.items():
        ratio = rows["torch"]["train step"] / r["train step"]
        print(f"  {k:20s} {r['forward']:9.1f} {r['forward+backward']:9.1f} {r['train step']:9.1f}  {ratio:.2f}x")
    loop_costs(task)
    top_ops(task)

"""What a benchmark worker measures besides its steady training rate: a profiler trace of a few steady steps,
each layer's kernels timed alone (the MFU ceiling), and the training rate with augmentation on. Each takes the
twin's profiler module (``load_backend(framework).profile``) or its ``Trainer``; nothing here imports a framework.
"""

from __future__ import annotations

import time
from pathlib import Path

from diptych.flops import layers

PROFILE_STEPS = 10  # steady steps traced per twin with --profile


def profile_steps(profiler, trainer, data, stream, profile_dir: str) -> dict:
    """Trace :data:`PROFILE_STEPS` steady steps (already compiled) and rank their operations."""
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


def kernels(profiler, task, precision: str, world) -> dict | None:
    """Each conv and dense layer's forward + backward timed alone, at the step's batch (``None`` for
    models without separate layers): ``{batch, ms, layers: [{name, ms, gflops}]}``. Their sum is the
    least time a step could take with these kernels, so the step's FLOPs over it bound the MFU."""
    ls = layers(task.model)
    if not ls:
        return None
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


def augmented_rate(trainer, data, stream, augmenter, seconds: float, batch: int) -> float:
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


def decode_rate(trainer, data, tokens: int = 200) -> float:
    """Greedy generation's tokens per second, one sequence, through the twin's key/value cache: an 8-id prompt,
    then ``tokens`` steps of one id each (the first, which JAX compiles, untimed). The cache slides as
    ``generate`` slides it, so a run longer than the context includes its re-reads."""
    logits, state = trainer.predict_sequence(data.x_test[:1, :8], None)
    logits, state = trainer.predict_sequence(logits[:, -1:].argmax(-1).astype("int32"), state)
    t0 = time.perf_counter()
    for _ in range(tokens):
        logits, state = trainer.predict_sequence(logits[:, -1:].argmax(-1).astype("int32"), state)
    return tokens / (time.perf_counter() - t0)

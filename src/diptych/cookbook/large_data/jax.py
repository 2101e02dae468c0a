"""Data larger than memory in JAX: stream a memory-mapped file through a generator into a jitted step.

Short answer: keep the data on disk in a flat binary (or ``.npy``) file; map one window of it at a time
with ``np.memmap`` (the OS pages in only what is touched), copy a batch out and ``jax.device_put`` it,
and unmap the window before the next, so memory stays bounded by the window, not the file. A plain
generator is the loader (grain or tf.data do the same with workers). Here a linear model is fitted in
one pass over the file while the process's resident memory is sampled: it grows by a few MB, not by the file.
What the seed answers got wrong: the question ("how does JAX handle large-scale data?") had no answer.
Run: ``python -m diptych.cookbook.large_data.jax [--fast]`` (prints one JSON line).
"""

import argparse
import json
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import psutil

D, CHUNK, BATCH = 32, 65_536, 1024  # features; rows per mapped window (8.6 MB); rows per step


def write_file(path, rows, w_true):  # chunk by chunk: never more than one chunk in memory
    rng = np.random.default_rng(0)
    with open(path, "wb") as f:
        for start in range(0, rows, CHUNK):
            x = rng.standard_normal((min(CHUNK, rows - start), D), dtype=np.float32)
            y = x @ w_true + 0.01 * rng.standard_normal(len(x), dtype=np.float32)
            f.write(np.concatenate([x, y[:, None]], 1).tobytes())  # row = D features + 1 target, float32


def memmap_stream(path, rows):  # yields (BATCH, D + 1) device arrays
    for start in range(0, rows, CHUNK):
        n = min(CHUNK, rows - start)
        window = np.memmap(path, np.float32, "r", offset=start * (D + 1) * 4, shape=(n, D + 1))
        for i in range(0, n, BATCH):
            yield jax.device_put(np.array(window[i : i + BATCH]))  # a copy: the window can go
        del window  # unmapped: its pages leave this process's memory


@jax.jit
def train_step(w, batch):
    x, y = batch[:, :D], batch[:, D]
    loss, g = jax.value_and_grad(lambda w: jnp.mean((x @ w - y) ** 2))(w)
    return w - 0.05 * g, loss


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="a 50 MiB file instead of 500 MiB")
    args = parser.parse_args()
    rows = 400_000 if args.fast else 4_000_000
    w_true = np.linspace(-1, 1, D).astype(np.float32)
    process = psutil.Process()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "data.f32")
        write_file(path, rows, w_true)
        w = jnp.zeros(D)
        baseline, peak = None, 0
        for steps, batch in enumerate(memmap_stream(path, rows), start=1):  # noqa: B007
            w, loss = train_step(w, batch)
            rss = process.memory_info().rss
            baseline = baseline or rss  # after the first step: libraries and buffers already allocated
            peak = max(peak, rss)
        file_mb = os.path.getsize(path) / 2**20
    print(
        json.dumps(
            {
                "recipe": "large-data",
                "framework": "jax",
                "file_mb": round(file_mb, 1),
                "steps": steps,
                "rss_growth_mb": round((peak - baseline) / 2**20, 1),
                "weight_error": float(np.abs(np.asarray(w) - w_true).max()),
                "final_loss": float(loss),
            }
        )
    )


if __name__ == "__main__":
    main()

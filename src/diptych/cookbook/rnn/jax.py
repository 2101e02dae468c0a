"""An RNN for sequences in JAX: next-value forecasting with correct windows and a held-out split.

Short answer: the same windows as the torch twin (label = the value right after the window, ``N - T`` of
them), a time split, and an Elman cell ``h = tanh(x W_ih + b + h W_hh)`` run by ``jax.lax.scan``, whose
body takes ``(carry, x_t)`` and returns ``(new_carry, output_t)``.
What the seed answers #7 and #19 got wrong: their cells never applied a weight (``concatenate`` or
``prev_h + x``: nothing to learn), the scan bodies returned one value instead of ``(carry, output)``,
the carry and inputs had mismatched shapes, nothing was trained, and there was no test split.
Run: ``python -m diptych.cookbook.rnn.jax [--fast]`` (prints one JSON line).
"""

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

T = 20  # window length


def windows(series):  # (N,) -> inputs (N - T, T), labels (N - T,): the label is the value right after the window
    x = np.stack([series[i : i + T] for i in range(len(series) - T)])
    y = series[T:]
    assert len(x) == len(y) and x[-1, -1] == series[-2] and y[-1] == series[-1]
    return x.astype(np.float32), y.astype(np.float32)


class Forecaster(nnx.Module):
    def __init__(self, rngs: nnx.Rngs, hidden=32):
        self.ih, self.hh = nnx.Linear(1, hidden, rngs=rngs), nnx.Linear(hidden, hidden, use_bias=False, rngs=rngs)
        self.out = nnx.Linear(hidden, 1, rngs=rngs)

    def __call__(self, x):  # (B, T) -> (B,)
        xw = self.ih(x[:, :, None]).swapaxes(0, 1)  # (T, B, hidden): the input projection of all steps at once
        w_hh = self.hh.kernel[...]

        def cell(h, xw_t):  # (carry, input) -> (new carry, output)
            h = jnp.tanh(xw_t + h @ w_hh)
            return h, h

        h_last, _ = jax.lax.scan(cell, jnp.zeros(xw.shape[1:]), xw)  # h_last: (B, hidden)
        return self.out(h_last)[:, 0]


@nnx.jit
def train_step(model, optimizer, x, y):
    loss, grads = nnx.value_and_grad(lambda model: jnp.mean((model(x) - y) ** 2))(model)
    optimizer.update(model, grads)
    return loss


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="fewer steps (for tests)")
    args = parser.parse_args()
    t = np.arange(3000)
    series = np.sin(0.1 * t) + 0.5 * np.sin(0.37 * t) + 0.05 * np.random.default_rng(0).standard_normal(len(t))
    split = int(0.8 * len(series))  # split in time, then window each part: no window sees the test period
    x_train, y_train = windows(series[:split])
    x_test, y_test = windows(series[split:])

    model = Forecaster(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)
    rng = np.random.default_rng(0)
    for _ in range(400 if args.fast else 3000):
        idx = rng.integers(0, len(x_train), 64)
        train_step(model, optimizer, x_train[idx], y_train[idx])

    test_mse = float(jnp.mean((model(x_test) - y_test) ** 2))
    naive_mse = float(np.mean((x_test[:, -1] - y_test) ** 2))  # forecast = the last value seen
    print(
        json.dumps(
            {
                "recipe": "rnn",
                "framework": "jax",
                "train_windows": len(x_train),
                "test_windows": len(x_test),
                "test_mse": round(test_mse, 5),
                "naive_mse": round(naive_mse, 5),
            }
        )
    )


if __name__ == "__main__":
    main()

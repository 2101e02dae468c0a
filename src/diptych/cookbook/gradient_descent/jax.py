"""Gradient descent written by hand in JAX: a quadratic and the Rosenbrock function.

Short answer: ``jax.grad(f)`` is the gradient function; one jitted step computes it and returns the new
parameters, ``x = x - lr * g`` (arrays are immutable: every update makes a new array). Stop when the
gradient is small, then compare with the known minimum. float64 needs ``jax_enable_x64``.
What the seed answers got wrong: #6 and #15 ran, but minimised only ``x**2``, whose minimum any step
size finds, and checked nothing; #16 called ``jax.optimizers.Adam``, which never existed (the old
``jax.experimental.optimizers`` was a set of functions and is gone; use optax).
Run: ``python -m diptych.cookbook.gradient_descent.jax`` (prints one JSON line).
"""

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)
A, B = jnp.array([[3.0, 1.0], [1.0, 2.0]]), jnp.array([1.0, 1.0])


def quadratic(x):  # 1/2 x^T A x - b^T x, minimum at A^-1 b
    return 0.5 * x @ A @ x - B @ x


def rosenbrock(x):  # minimum 0 at (1, 1), at the bottom of a long curved valley
    return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2


def minimise(f, x0, lr, tol=1e-6, max_steps=100_000):
    x = jnp.asarray(x0, dtype=jnp.float64)
    step_fn = jax.jit(lambda x: (x - lr * jax.grad(f)(x), jnp.linalg.norm(jax.grad(f)(x))))  # XLA dedupes the grad
    for step in range(max_steps):  # noqa: B007  (step is returned)
        x_next, g_norm = step_fn(x)
        if g_norm < tol:
            break
        x = x_next  # a new array: JAX arrays are never updated in place
    return np.asarray(x), step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="stop at a gradient norm of 1e-5 instead of 1e-6")
    tol = 1e-5 if parser.parse_args().fast else 1e-6  # near the minimum, error ~ |gradient| / 0.4 (smallest curvature)
    results = {}
    # the step size must stay below 2 / (largest curvature): 2/3.6 for the quadratic, ~2/1000 at Rosenbrock's minimum
    for name, f, x0, lr, known in [
        ("quadratic", quadratic, [5.0, -3.0], 0.25, np.linalg.solve(A, B)),
        ("rosenbrock", rosenbrock, [-1.2, 1.0], 1.5e-3, np.array([1.0, 1.0])),
    ]:
        x, steps = minimise(f, x0, lr, tol)
        results[name] = {"x": x.tolist(), "steps": steps, "error": float(np.max(np.abs(x - known)))}
    print(json.dumps({"recipe": "gradient-descent", "framework": "jax", **results}))


if __name__ == "__main__":
    main()

"""Gradient descent written by hand in PyTorch: a quadratic and the Rosenbrock function.

Short answer: make the parameters a leaf tensor with ``requires_grad=True``, get the gradient with
``torch.autograd.grad`` (or ``.backward()``), and update in place under ``torch.no_grad()`` so the update
itself is not recorded. Stop when the gradient is small, then compare with the known minimum.
What the seed answers got wrong: #13 built ``optim.Adam([x])`` on ``torch.tensor(10.0)`` without
``requires_grad``, so ``backward()`` raised "element 0 of tensors does not require grad"; #6 and #15
(JAX, they run) minimised only ``x**2``, whose minimum any step size finds, and checked nothing.
Run: ``python -m diptych.cookbook.gradient_descent.torch`` (prints one JSON line).
"""

import argparse
import json

import numpy as np
import torch

A, B = torch.tensor([[3.0, 1.0], [1.0, 2.0]], dtype=torch.float64), torch.tensor([1.0, 1.0], dtype=torch.float64)


def quadratic(x):  # 1/2 x^T A x - b^T x, minimum at A^-1 b
    return 0.5 * x @ A @ x - B @ x


def rosenbrock(x):  # minimum 0 at (1, 1), at the bottom of a long curved valley
    return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2


def minimise(f, x0, lr, tol=1e-6, max_steps=100_000):
    x = torch.tensor(x0, dtype=torch.float64, requires_grad=True)  # a leaf that autograd tracks
    for step in range(max_steps):  # noqa: B007  (step is returned)
        (g,) = torch.autograd.grad(f(x), x)
        if torch.linalg.vector_norm(g) < tol:
            break
        with torch.no_grad():  # the update is not part of the function being differentiated
            x -= lr * g
    return x.detach().numpy(), step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="stop at a gradient norm of 1e-5 instead of 1e-6")
    tol = 1e-5 if parser.parse_args().fast else 1e-6  # near the minimum, error ~ |gradient| / 0.4 (smallest curvature)
    results = {}
    # the step size must stay below 2 / (largest curvature): 2/3.6 for the quadratic, ~2/1000 at Rosenbrock's minimum
    for name, f, x0, lr, known in [
        ("quadratic", quadratic, [5.0, -3.0], 0.25, np.linalg.solve(A.numpy(), B.numpy())),
        ("rosenbrock", rosenbrock, [-1.2, 1.0], 1.5e-3, np.array([1.0, 1.0])),
    ]:
        x, steps = minimise(f, x0, lr, tol)
        results[name] = {"x": x.tolist(), "steps": steps, "error": float(np.max(np.abs(x - known)))}
    print(json.dumps({"recipe": "gradient-descent", "framework": "torch", **results}))


if __name__ == "__main__":
    main()

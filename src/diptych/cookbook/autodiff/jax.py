"""How autodiff works, in JAX: gradients, Jacobians, Hessians, HVPs, per-example and custom gradients.

Short answer: differentiation is a function transform: ``jax.grad``, ``jax.value_and_grad``,
``jax.jacfwd``, ``jax.jacrev``, ``jax.hessian``, ``jax.jvp`` and ``jax.vmap`` compose freely;
``jax.custom_vjp`` is a gradient you write yourself. Every result below is checked against central
finite differences in float64 (``jax_enable_x64``: JAX computes in float32 unless told).
What the seed answers #5 and #15 left out: they showed one ``grad`` of ``x**2`` (they run) and nothing
else: no Jacobian, no higher order, no per-example gradient, no check that the numbers are right.
Run: ``python -m diptych.cookbook.autodiff.jax`` (prints one JSON line; ``--fast`` changes nothing).
"""

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np
from jax import grad, hessian, jacfwd, jacrev, jvp, value_and_grad, vmap

jax.config.update("jax_enable_x64", True)  # finite differences need float64 to be checked to 1e-6


def f(x):  # R^3 -> R
    return jnp.sum(jnp.sin(x) * x**2) + x[0] * x[1] * x[2]


def g(x):  # R^3 -> R^2
    return jnp.stack([x[0] * x[1] * jnp.sin(x[2]), jnp.exp(x[0]) - x[1] ** 2 * x[2]])


def loss(w, x, y):  # one example's logistic loss: w (3,), x (3,), y in {-1, 1}
    return jax.nn.softplus(-y * (x @ w))


@jax.custom_vjp
def softplus(x):  # log(1 + e^x) with a hand-written gradient that stays finite
    return jnp.where(x > 30, x, jnp.log1p(jnp.exp(x)))  # exp overflows for large x


softplus.defvjp(
    lambda x: (softplus(x), x),  # forward: value and what the backward needs
    lambda x, g: (g * jax.nn.sigmoid(x),),
)  # backward: a tuple, one cotangent per input


def fd(fun, x, h=1e-6):  # central differences of a numpy function: (n,) -> (n,) for scalars, (m, n) for vectors
    return np.stack([(fun(x + h * e) - fun(x - h * e)) / (2 * h) for e in np.eye(len(x))], -1)


def main():
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).add_argument("--fast", action="store_true")
    x0, v0 = np.array([0.5, -1.2, 2.0]), np.array([1.0, 0.3, -0.7])
    xs, ys, w0 = np.random.default_rng(0).standard_normal((4, 3)), np.array([1.0, -1.0, 1.0, -1.0]), x0
    x, v, w = jnp.asarray(x0), jnp.asarray(v0), jnp.asarray(w0)
    ts = jnp.array([-5.0, 0.0, 5.0, 1000.0])  # for the custom gradient: e^1000 overflows float64
    f_np, g_np = (lambda a: np.asarray(f(jnp.asarray(a)))), (lambda a: np.asarray(g(jnp.asarray(a))))

    # no tape: grad(f) is a new function
    got = {
        "grad": grad(f)(x),
        "value_and_grad": value_and_grad(f)(x)[1],
        "jacfwd": jacfwd(g)(x),
        "jacrev": jacrev(g)(x),
        "hessian": hessian(f)(x),
        "hvp": jvp(grad(f), (x,), (v,))[1],  # forward-over-reverse: H v without forming H
        "per_example": vmap(grad(loss), in_axes=(None, 0, 0))(w, jnp.asarray(xs), jnp.asarray(ys)),
        "custom": grad(lambda t: softplus(t).sum())(ts),
    }  # elementwise: the gradient of the sum
    hess_fd = fd(lambda a: fd(f_np, a, 1e-4), x0, 1e-4)
    want = {
        "grad": fd(f_np, x0),
        "value_and_grad": fd(f_np, x0),
        "jacfwd": fd(g_np, x0),
        "jacrev": fd(g_np, x0),
        "hessian": hess_fd,
        "hvp": hess_fd @ v0,
        "per_example": np.stack(
            [
                fd(lambda a, xi=xi, yi=yi: np.asarray(loss(jnp.asarray(a), xi, yi)), w0)
                for xi, yi in zip(xs, ys, strict=True)
            ]
        ),
        "custom": np.asarray(softplus(ts + 1e-6) - softplus(ts - 1e-6)) / 2e-6,
    }
    errors = {k: float(np.max(np.abs(np.asarray(got[k]) - want[k]))) for k in got}

    # the naive where() version: inf * 0 in the unused branch
    naive = grad(lambda t: jnp.where(t > 30, t, jnp.log1p(jnp.exp(t))))(1000.0)
    print(
        json.dumps(
            {
                "recipe": "autodiff",
                "framework": "jax",
                "max_error": max(errors.values()),
                "errors": errors,
                "naive_grad_at_1000": str(float(naive)),
                "values": {k: np.asarray(got[k]).tolist() for k in got},
            }
        )
    )


if __name__ == "__main__":
    main()

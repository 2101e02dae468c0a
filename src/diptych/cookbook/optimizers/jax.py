"""The library optimizers and their maths, in JAX: SGD, momentum, Nesterov, Adam, AdamW from scratch vs optax.

Short answer: each optimizer is a pure update ``(params, grad, state, t) -> (params, state)``, which is
also what an optax ``GradientTransformation`` is (``init`` + ``update``); written from its equations it
follows optax step for step (here to <= 1e-6 relative over 100 steps in float64, on Rosenbrock and a
logistic regression). Adam's eps goes *outside* the square root (optax's ``eps``; ``eps_root`` is the
one inside), and ``optax.adamw`` decays the weights directly (decoupled), not through the gradient (L2).
What the seed answer #16 got wrong: ``jax.optimizers.Adam`` never existed (``jax.experimental.optimizers``
was a triple of functions, later moved to ``jax.example_libraries`` and retired in favour of optax).
Run: ``python -m diptych.cookbook.optimizers.jax`` (prints one JSON line; ``--fast`` changes nothing).
"""

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax

jax.config.update("jax_enable_x64", True)
EPS, WD, STEPS = 1e-3, 0.1, 100  # a large eps: with 1e-8 its placement changes Adam by ~1e-9, too little to see


def sgd(p, g, state, t, lr, **_):
    return p - lr * g, state


def momentum(p, g, b, t, lr, mu=0.9, nesterov=False, **_):
    b = mu * b + g  # the velocity buffer (torch: dampening 0; optax.trace)
    return p - lr * (g + mu * b if nesterov else b), b  # Nesterov: step along the look-ahead gradient


def adam(p, g, state, t, lr, b1=0.9, b2=0.999, wd=0.0, decoupled=True, eps_inside_sqrt=False, **_):
    if wd and not decoupled:
        g = g + wd * p  # Adam + L2: the decay goes through the moments and is rescaled by them
    m, v = b1 * state[0] + (1 - b1) * g, b2 * state[1] + (1 - b2) * g * g
    m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)  # bias correction, t counts from 1
    denom = jnp.sqrt(v_hat + EPS) if eps_inside_sqrt else jnp.sqrt(v_hat) + EPS
    if wd and decoupled:
        p = p * (1 - lr * wd)  # AdamW: shrink the weights themselves, outside the adaptive step
    return p - lr * m_hat / denom, (m, v)


def rosenbrock(p):
    return (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2


rng = np.random.default_rng(0)
X = jnp.asarray(rng.standard_normal((200, 5)))
Y = jnp.asarray((rng.random(200) < 1 / (1 + np.exp(-np.asarray(X) @ [1.0, -2.0, 0.5, 0.0, 3.0]))).astype(float))


def logistic(w):  # mean binary cross-entropy of a logistic regression
    return optax.sigmoid_binary_cross_entropy(X @ w, Y).mean()


PROBLEMS = {  # f, start, learning rate per optimizer (sgd, momentum, nesterov, adam, adamw)
    "rosenbrock": (rosenbrock, [-1.2, 1.0], (1e-3, 1e-4, 1e-4, 1e-2, 1e-2)),
    "logistic": (logistic, [0.0] * 5, (0.5, 0.05, 0.05, 0.05, 0.05)),
}
OPTIMIZERS = {  # name: (from-scratch update, its extra settings, the library's optimizer)
    "sgd": (sgd, {}, lambda lr: optax.sgd(lr)),
    "momentum": (momentum, {}, lambda lr: optax.sgd(lr, momentum=0.9)),
    "nesterov": (momentum, {"nesterov": True}, lambda lr: optax.sgd(lr, momentum=0.9, nesterov=True)),
    "adam": (adam, {}, lambda lr: optax.adam(lr, eps=EPS)),
    "adamw": (adam, {"wd": WD}, lambda lr: optax.adamw(lr, eps=EPS, weight_decay=WD)),
}


def check(problems=tuple(PROBLEMS), **flip):  # the worst relative difference over 100 steps, per problem/optimizer
    worst = {}  # flip: eps_inside_sqrt=True or decoupled=False changes the from-scratch Adam (the test does)
    for problem in problems:
        f, start, lrs = PROBLEMS[problem]
        for lr, (name, (update, settings, library)) in zip(lrs, OPTIMIZERS.items(), strict=True):
            p_lib = jnp.asarray(start)  # the library returns updates; optax.apply_updates adds them
            opt = library(lr)
            opt_state = opt.init(p_lib)
            p = jnp.asarray(start)
            state = (jnp.zeros_like(p), jnp.zeros_like(p)) if update is adam else jnp.zeros_like(p)

            @jax.jit  # one compiled step for both: eager JAX would dispatch every small op separately
            def step(p_lib, opt_state, p, state, t, f=f, opt=opt, update=update, lr=lr, settings=settings):
                updates, opt_state = opt.update(jax.grad(f)(p_lib), opt_state, p_lib)
                p, state = update(p, jax.grad(f)(p), state, t, lr, **settings, **flip)
                return optax.apply_updates(p_lib, updates), opt_state, p, state

            err = 0.0
            for t in range(1, STEPS + 1):
                p_lib, opt_state, p, state = step(p_lib, opt_state, p, state, t)
                err = max(err, float(jnp.abs(p - p_lib).max() / jnp.abs(p_lib).max()))
            worst[f"{problem}/{name}"] = err
    return worst


def main():
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).add_argument("--fast", action="store_true")
    worst = check()
    print(
        json.dumps(
            {
                "recipe": "optimizers",
                "framework": "jax",
                "library": "optax",
                "steps": STEPS,
                "max_rel_error": max(worst.values()),
                "errors": worst,
            }
        )
    )


if __name__ == "__main__":
    main()

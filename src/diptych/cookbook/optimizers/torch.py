"""The library optimizers and their maths, in PyTorch: SGD, momentum, Nesterov, Adam, AdamW from scratch.

Short answer: each optimizer is a pure update ``(params, grad, state, t) -> (params, state)``; written
from its equations it follows ``torch.optim`` step for step (here to <= 1e-6 relative over 100 steps in
float64, on Rosenbrock and a logistic regression). Two details decide whether it matches: Adam's eps is
added *outside* the square root, ``m_hat / (sqrt(v_hat) + eps)``, and AdamW decays the weights directly,
``p *= 1 - lr * wd`` (decoupled), where Adam's ``weight_decay`` adds ``wd * p`` to the gradient (L2).
What the seed answer #13 got wrong: ``optim.Adam([x])`` on a tensor without ``requires_grad``, so the
first ``backward()`` raised; it also never said what Adam computes.
Run: ``python -m diptych.cookbook.optimizers.torch`` (prints one JSON line; ``--fast`` changes nothing).
"""

import argparse
import json

import numpy as np
import torch
from torch.func import grad

torch.set_default_dtype(torch.float64)
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
    denom = torch.sqrt(v_hat + EPS) if eps_inside_sqrt else torch.sqrt(v_hat) + EPS
    if wd and decoupled:
        p = p * (1 - lr * wd)  # AdamW: shrink the weights themselves, outside the adaptive step
    return p - lr * m_hat / denom, (m, v)


def rosenbrock(p):
    return (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2


rng = np.random.default_rng(0)
X = torch.tensor(rng.standard_normal((200, 5)))
Y = torch.tensor((rng.random(200) < 1 / (1 + np.exp(-X.numpy() @ [1.0, -2.0, 0.5, 0.0, 3.0]))).astype(float))


def logistic(w):  # mean binary cross-entropy of a logistic regression
    return torch.nn.functional.binary_cross_entropy_with_logits(X @ w, Y)


PROBLEMS = {  # f, start, learning rate per optimizer (sgd, momentum, nesterov, adam, adamw)
    "rosenbrock": (rosenbrock, [-1.2, 1.0], (1e-3, 1e-4, 1e-4, 1e-2, 1e-2)),
    "logistic": (logistic, [0.0] * 5, (0.5, 0.05, 0.05, 0.05, 0.05)),
}
OPTIMIZERS = {  # name: (from-scratch update, its extra settings, the library's optimizer)
    "sgd": (sgd, {}, lambda ps, lr: torch.optim.SGD(ps, lr)),
    "momentum": (momentum, {}, lambda ps, lr: torch.optim.SGD(ps, lr, momentum=0.9)),
    "nesterov": (momentum, {"nesterov": True}, lambda ps, lr: torch.optim.SGD(ps, lr, momentum=0.9, nesterov=True)),
    "adam": (adam, {}, lambda ps, lr: torch.optim.Adam(ps, lr, eps=EPS)),
    "adamw": (adam, {"wd": WD}, lambda ps, lr: torch.optim.AdamW(ps, lr, eps=EPS, weight_decay=WD)),
}


def check(problems=tuple(PROBLEMS), **flip):  # the worst relative difference over 100 steps, per problem/optimizer
    worst = {}  # flip: eps_inside_sqrt=True or decoupled=False changes the from-scratch Adam (the test does)
    for problem in problems:
        f, start, lrs = PROBLEMS[problem]
        for lr, (name, (update, settings, library)) in zip(lrs, OPTIMIZERS.items(), strict=True):
            p_lib = torch.tensor(start, requires_grad=True)  # the library updates a leaf tensor in place
            opt = library([p_lib], lr)
            p = torch.tensor(start)
            state = (torch.zeros_like(p), torch.zeros_like(p)) if update is adam else torch.zeros_like(p)
            err = 0.0
            for t in range(1, STEPS + 1):
                opt.zero_grad()
                f(p_lib).backward()
                opt.step()
                p, state = update(p, grad(f)(p), state, t, lr, **settings, **flip)
                err = max(err, ((p - p_lib).abs().max() / p_lib.abs().max()).item())
            worst[f"{problem}/{name}"] = err
    return worst


def main():
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).add_argument("--fast", action="store_true")
    worst = check()
    print(
        json.dumps(
            {
                "recipe": "optimizers",
                "framework": "torch",
                "library": "torch.optim",
                "steps": STEPS,
                "max_rel_error": max(worst.values()),
                "errors": worst,
            }
        )
    )


if __name__ == "__main__":
    main()

"""The optimizers recipe's check is a real check: move Adam's eps inside the square root, or make AdamW's
weight decay an L2 term in the gradient, and the from-scratch trajectory leaves torch.optim's and optax's;
give any optimizer its neighbour's update and its own comparison fails (each compares real steps)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from diptych.cookbook import recipe_file

SCRIPT = """
import json, runpy, sys
recipe = runpy.run_path(sys.argv[1])  # the recipe's functions, without running its main()
problems = ["logistic"]  # its gradients shrink to where eps matters (Rosenbrock's moved Adam by only 1.6e-6)
got = {"eps_inside_sqrt": recipe["check"](problems, eps_inside_sqrt=True),
       "l2_instead_of_decoupled": recipe["check"](problems, decoupled=False)}
table = recipe["check"].__globals__["OPTIMIZERS"]  # name: (from-scratch update, settings, library optimizer)
neighbour = {"sgd": ("momentum", {}), "momentum": ("momentum", {"nesterov": True}), "nesterov": ("momentum", {}),
             "adam": ("adam", {"wd": 0.1}), "adamw": ("adam", {})}
for name, (update, settings) in neighbour.items():
    table[name] = (recipe[update], settings, table[name][2])
got["neighbours_update"] = recipe["check"](problems)
print(json.dumps(got))
"""


@pytest.mark.full  # with the whole cookbook (tests/cookbook/test_recipes.py)
@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_changed_adam_maths_fails_the_check(framework):
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(recipe_file("optimizers", framework))],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    eps, l2 = got["eps_inside_sqrt"], got["l2_instead_of_decoupled"]
    assert eps["logistic/adam"] > 1e-3 and eps["logistic/adamw"] > 1e-3, eps  # eps placement changes both
    assert l2["logistic/adamw"] > 1e-3, l2  # AdamW != Adam + L2
    for errors in (eps, l2):  # and nothing else moved: the flips touch only what they name
        assert all(v <= 1e-6 for k, v in errors.items() if not k.endswith(("adam", "adamw"))), errors
    assert l2["logistic/adam"] <= 1e-6 and len(eps) == len(l2) == 5, l2  # plain Adam has no decay
    swapped = got["neighbours_update"]  # e.g. SGD's library steps against momentum's maths
    assert len(swapped) == 5 and all(v > 1e-2 for v in swapped.values()), swapped

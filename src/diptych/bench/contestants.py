"""Who runs in a benchmark, with which recipe, in which order: the twins with diptych's recipe (in each
precision), and with ``--baseline`` the twins with the seed recipe and the seed baseline itself
(:mod:`diptych.cookbook.seed_baseline`, a standalone PyTorch program).

    >>> list(contestant_specs(["torch", "jax"], ["fp32"], baseline=True))
    ['torch', 'jax', 'torch (seed recipe)', 'jax (seed recipe)', 'seed-baseline']
    >>> folder("torch (seed recipe)")
    'torch-seed-recipe'
"""

from __future__ import annotations

from diptych.bench.summary import BASELINE, SEED_SUFFIX

BASELINE_MODULE = "diptych.cookbook.seed_baseline"  # the seed article's recipe, as written (torch)
# The seed recipe, as diptych run overrides: a twin trained this way isolates the framework from the recipe.
SEED_RECIPE = {
    "epochs": 10,
    "batch_size": 64,
    "lr": 1e-3,
    "optimizer": "adam",
    "schedule": "constant",
    "label_smoothing": 0.0,
}
SEED_NORMALIZE = "half"  # Normalize((0.5,), (0.5,)) after ToTensor (see diptych.data.datasets.load_dataset)
MNIST_TRAIN = 60_000  # the seed baseline's training set (MNIST only)
EVALS_PER_EPOCH = 10  # the default --eval-every: about ten evaluations per epoch, until the target


def contestant_specs(frameworks: list[str], precisions: list[str], baseline: bool) -> dict[str, dict]:
    """``{label: {framework, precision, recipe}}`` in run order: the twins with diptych's recipe in each
    precision, then (``baseline``) the twins with the seed recipe and the seed baseline itself."""
    specs = {}
    for prec in precisions:
        for fw in frameworks:
            specs[fw + ("" if prec == "fp32" else f" {prec}")] = {
                "framework": fw,
                "precision": prec,
                "recipe": "diptych",
            }
    if baseline:
        for fw in frameworks:
            specs[fw + SEED_SUFFIX] = {"framework": fw, "precision": "fp32", "recipe": "seed"}
        specs[BASELINE] = {"framework": BASELINE, "precision": "fp32", "recipe": "seed"}
    return specs


def apply_recipe(task, recipe: str):
    """The task with the seed recipe's optimizer, schedule, batch and epochs when ``recipe == "seed"``."""
    return task.with_overrides(**SEED_RECIPE) if recipe == "seed" else task


def interleaved(contestants: list[str], repeats: int) -> list[tuple[int, str]]:
    """The run order: every contestant once per round, rounds repeated (A B A B ...)."""
    return [(r, c) for r in range(repeats) for c in contestants]


def folder(label: str) -> str:
    """A contestant's label as a folder name: ``torch (seed recipe)`` -> ``torch-seed-recipe``."""
    return "-".join(label.replace("(", " ").replace(")", " ").split())

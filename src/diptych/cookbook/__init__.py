"""The cookbook: one short, correct, tested PyTorch program and one JAX program per classic question.

Each recipe is a pair of standalone files, ``<folder>/torch.py`` and ``<folder>/jax.py``, that read line
against line, print their result as a final JSON line and take ``--fast``. They are the only modules in
``diptych`` that import torch or JAX at the top; this package's ``__init__`` never imports them. Run one
with ``python -m diptych.cookbook.<folder>.<framework>`` (not ``python torch.py``: a file named
``torch.py`` next to the script would shadow the real ``torch`` package) or ``diptych cookbook run NAME``.
The porting guide is ``README.md`` beside this file. ``seed_baseline.py`` is the seed article's PyTorch
MNIST CNN as written (fixed only to run), which ``diptych bench --baseline`` runs as a standalone program.
"""

from __future__ import annotations

from pathlib import Path

from diptych.errors import DiptychError

FRAMEWORKS = ("torch", "jax")
HERE = Path(__file__).resolve().parent

# CLI name -> the question it answers (the folder is the name with "-" -> "_")
RECIPES = {
    "mlp": "an MLP classifier (MNIST 784-256-128-10)",
    "cnn": "a CNN classifier (MNIST, two convs, the right flatten)",
    "augmentation": "image augmentation: batched, seeded, on device; why not flips",
    "rnn": "an RNN for sequences: windows, labels, a held-out split",
    "autodiff": "how autodiff works: grad, Jacobians, Hessian, HVP, per-example, custom",
    "gradient-descent": "gradient descent written by hand (quadratic, Rosenbrock)",
    "optimizers": "SGD, momentum, Nesterov, Adam, AdamW from their equations vs the library",
    "jit": "dynamic graphs vs tracing: recompiles, side effects, globals, RNG",
    "data-loading": "the input pipeline: the same batches in both frameworks",
    "gpu": "using an accelerator: devices, placement, mixed precision",
    "distributed": "training on several devices: the same loss as one",
    "large-data": "data larger than memory: memory-mapped streaming",
    "schedules": "LR schedules, gradient clipping, weight decay, bf16",
    "speech": "a speech recognizer: wav -> log-mel -> CNN (spoken digits)",
}


def folder(name: str) -> Path:
    """The recipe's folder, or a one-line error listing the recipes."""
    if name not in RECIPES:
        raise DiptychError(
            f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)} (see `diptych cookbook list`)"
        )
    return HERE / name.replace("-", "_")


def recipe_file(name: str, framework: str) -> Path:
    return folder(name) / f"{framework}.py"


def module(name: str, framework: str) -> str:
    """The importable module name, for ``python -m``."""
    return f"diptych.cookbook.{folder(name).name}.{framework}"

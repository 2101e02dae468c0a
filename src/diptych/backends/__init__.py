"""Backends: one idiomatic twin per framework, imported only when asked for.

Both packages expose the same modules and public names:

* ``models.build_model(spec, seed)`` -> the framework's module for a neutral model spec
* ``weights.export(model)`` / ``weights.load(model, params)`` <-> canonical numpy weights
* ``train.Trainer(task, seed, total_steps)`` -> ``train_step``, ``predict``, optimizer state I/O
* ``train.versions()`` / ``train.device_name()``

The neutral core never imports torch or jax: it calls :func:`load_backend`, which imports the
backend package lazily and explains in one line which extra to install when it is missing.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

from diptych.errors import DiptychError

FRAMEWORKS = ("torch", "jax")
_REQUIRES = {"torch": ("torch",), "jax": ("jax", "flax", "optax")}


def before_import(framework: str) -> None:
    """Settings a framework's runtime reads once, when it loads, so they go in before its first import.

    torch: OpenMP's ``OMP_WAIT_POLICY=PASSIVE`` (unless the user set one): a thread that waits at a
    barrier sleeps instead of spinning. Spinning threads burn the cores a busy neighbour needs (another
    process, or XLA's threads in a process that runs both twins), and when a partner is preempted they
    spin for a whole scheduler slice; on this 2-core machine under load, 2 torch threads trained
    mnist1d-cnn 3.9x faster passive than active. No effect when torch is already loaded (run.json's
    ``runtime.thread_policy.omp_wait_policy`` then says what OpenMP got). The price, on a machine torch
    has to itself: 1.4-1.9x on barrier-heavy steps (mnist-cnn at batch 32, the LSTMs); an explicit
    ``GOMP_SPINCOUNT=20000`` (libgomp lets it override the policy) wins that back but collapses 8-15x
    under one competing process (BENCHMARKS.md, ``benchmarks/contention.py``).
    """
    if framework == "torch" and "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def load_backend(framework: str) -> ModuleType:
    """Import ``diptych.backends.<framework>``, e.g. ``load_backend("jax").train.Trainer``."""
    if framework not in FRAMEWORKS:
        raise DiptychError(f"unknown framework {framework!r}; choose one of {', '.join(FRAMEWORKS)}")
    before_import(framework)
    missing = []
    for module in _REQUIRES[framework]:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise DiptychError(
            f"the {framework} twin needs {', '.join(missing)}, which is not installed; "
            f"install it with: pip install 'diptych[{framework}]'"
        )
    return importlib.import_module(f"diptych.backends.{framework}")

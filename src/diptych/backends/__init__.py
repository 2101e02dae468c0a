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

    torch: how an OpenMP thread waits at the barrier that ends each parallel op (unless the user set
    ``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT`` or ``OMP_NUM_THREADS``): it spins for ``GOMP_SPINCOUNT=20000``
    rounds (about 0.2 ms), then sleeps (``OMP_WAIT_POLICY=PASSIVE``). Sleeping at once costs the
    barrier-heavy steps 1.5x on a machine torch has to itself (a futex wake-up per op: mnist-cnn at batch
    32, the LSTMs); spinning for long burns the cores a busy neighbour needs, and beside one competing
    process two spinning threads trained mnist-cnn 6x slower. The short spin is safe because the
    trainer's :class:`~diptych.backends.torch.train.ThreadGovernor` drops to one thread (which never
    waits) while another process is busy. With ``OMP_NUM_THREADS`` set there is no governor, so the
    wait stays passive. No effect when torch is already loaded (run.json's ``runtime.thread_policy``
    says what OpenMP got). Measured: BENCHMARKS.md, ``benchmarks/contention.py``.
    """
    if framework == "torch" and "torch" not in sys.modules:
        user_chose = any(k in os.environ for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS"))
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        if not user_chose:
            os.environ["GOMP_SPINCOUNT"] = "20000"


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

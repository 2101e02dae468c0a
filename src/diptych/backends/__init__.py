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
from types import ModuleType

from diptych.errors import DiptychError

FRAMEWORKS = ("torch", "jax")
_REQUIRES = {"torch": ("torch",), "jax": ("jax", "flax", "optax")}


def load_backend(framework: str) -> ModuleType:
    """Import ``diptych.backends.<framework>``, e.g. ``load_backend("jax").train.Trainer``."""
    if framework not in FRAMEWORKS:
        raise DiptychError(f"unknown framework {framework!r}; choose one of {', '.join(FRAMEWORKS)}")
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

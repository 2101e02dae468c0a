"""``FILE.py:NAME`` -> a model built by a user's factory (neutral until called)."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path

from diptych.errors import DiptychError
from diptych.port.guard import user_code


def find(spec: str):
    """Import FILE.py and return its callable NAME (not called)."""
    path, sep, name = spec.rpartition(":")
    if not sep or not path or not name:
        raise DiptychError(f"{spec!r}: expected FILE.py:FACTORY, e.g. models.py:ResNet")
    file = Path(path)
    if not file.is_file():
        raise DiptychError(f"{file}: no such file (from {spec!r})")
    mod_name = f"_diptych_port_{file.stem}_{abs(hash(str(file.resolve())))}"
    try:
        if mod_name in sys.modules:
            module = sys.modules[mod_name]
        else:
            loader = importlib.util.spec_from_file_location(mod_name, file)
            module = importlib.util.module_from_spec(loader)
            sys.modules[mod_name] = module
            with user_code(f"{file} (while importing)"):  # its sys.exit(): one line, not diptych's exit
                loader.loader.exec_module(module)
    except DiptychError:
        sys.modules.pop(mod_name, None)
        raise
    except Exception as e:  # the user's file: any error is bad input, in one line
        sys.modules.pop(mod_name, None)
        raise DiptychError(f"{file} does not import: {type(e).__name__}: {e}") from None
    except KeyboardInterrupt:  # a real Ctrl-C while importing: no half-imported module is kept
        sys.modules.pop(mod_name, None)
        raise
    factory = getattr(module, name, None)
    if factory is None or not callable(factory):
        raise DiptychError(
            f"{file} has no factory {name!r}; it defines: "
            f"{', '.join(n for n, v in vars(module).items() if callable(v) and not n.startswith('_'))}"
        )
    return factory


def load(spec: str, framework: str, seed: int = 0):
    """Import FILE.py and call NAME: torch with no arguments; JAX with ``rngs=nnx.Rngs(seed)`` if it takes one."""
    factory = find(spec)
    try:
        with user_code(f"the factory {spec}"):  # its sys.exit() or KeyboardInterrupt: one line
            if framework == "jax":
                from flax import nnx

                from diptych.port._nnx import build_abstract

                # a class: its __init__'s (NNX's metaclass hides it from the class's own signature)
                params = inspect.signature(factory.__init__ if inspect.isclass(factory) else factory).parameters

                def make():
                    return factory(rngs=nnx.Rngs(seed)) if "rngs" in params else factory()

                try:  # its initial weights are replaced by converted ones: skip running the initializers
                    model = build_abstract(make)
                except Exception:
                    model = make()
                ok = isinstance(model, nnx.Module)
            else:
                import torch

                torch.manual_seed(seed)
                model = factory()
                ok = isinstance(model, torch.nn.Module)
    except DiptychError:
        raise
    except Exception as e:
        raise DiptychError(f"{spec}: the factory failed: {type(e).__name__}: {e}") from None
    if not ok:
        want = "an nnx.Module" if framework == "jax" else "a torch nn.Module"
        raise DiptychError(f"{spec} returned {type(model).__name__}, not {want}")
    return model

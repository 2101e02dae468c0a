"""Dynamic graphs vs tracing in JAX: eager, ``jax.jit``, retraces, side effects, globals, PRNG keys.

Short answer: ``jax.jit`` traces the Python function once per input shape/dtype (and static argument)
into an XLA program; the Python body, side effects included, runs only while tracing. So: pass data
as arguments (a global is read once, at trace time, then baked in as a constant and goes stale), keep
shapes fixed (each new shape retraces and recompiles), and pass explicit PRNG keys (no hidden global
state: the same key gives the same numbers; ``jax.random.split`` makes new ones).
The seed answers never asked it, though every JAX answer in them depends on it.
Run: ``python -m diptych.cookbook.jit.jax`` (prints one JSON line; ``--fast`` changes nothing).
"""

import argparse
import json

import jax
import jax.numpy as jnp

body_runs = []


def program_chars(jitted, *args):  # the size of the XLA program jit builds for these arguments
    return len(jitted.lower(*args).as_text())


def f(x):
    return (jnp.sin(x) * 2).sum()


def noisy(x):
    body_runs.append(1)  # a Python side effect in the function body
    return x * 2


def main():
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).add_argument("--fast", action="store_true")
    compiled = jax.jit(f)
    sizes = [3, 3, 4, 5, 6]
    results = [compiled(jnp.arange(float(n))) for n in sizes]
    equal = all(bool(r == f(jnp.arange(float(n)))) for r, n in zip(results, sizes, strict=True))
    compiled_noisy = jax.jit(noisy)
    for _ in range(3):
        compiled_noisy(jnp.ones(3))  # the side effect ran once, while tracing; later calls run the XLA program
    retrace = {"calls": len(sizes), "compiles": compiled._cache_size(), "side_effect_runs_in_3_calls": len(body_runs)}

    data = jax.random.normal(jax.random.key(1), (1000, 100))  # a dataset the function reads as a global
    read_global = jax.jit(lambda: (data * 2).sum())
    before = float(read_global())
    data = jnp.zeros((1000, 100))  # noqa: F841  jit does not look again: the traced constant is stale
    after = float(read_global())
    as_argument = jax.jit(lambda d: (d * 2).sum())
    chars = {"closure": program_chars(read_global), "argument": program_chars(as_argument, jnp.zeros((1000, 100)))}

    key = jax.random.key(0)
    a, b = jax.random.uniform(key, (2,)), jax.random.uniform(key, (2,))  # same key, same numbers: a == b
    k1, _ = jax.random.split(key)  # new numbers need a new key
    rng = {
        "same_call_twice_equal": bool((a == b).all()),
        "split_key_differs": bool((jax.random.uniform(k1, (2,)) != a).all()),
    }
    print(
        json.dumps(
            {
                "recipe": "jit",
                "framework": "jax",
                "compiled_equals_eager": equal,
                **retrace,
                "global_changed_to_zeros_read_as": after,
                "global_before": before,
                "program_chars": chars,
                "rng": rng,
            }
        )
    )


if __name__ == "__main__":
    main()

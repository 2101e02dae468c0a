"""Dynamic graphs vs tracing in PyTorch: eager, ``torch.compile``, recompiles, side effects, globals, RNG.

Short answer: PyTorch runs eagerly (each op executes as Python reaches it); ``torch.compile`` captures
the Python bytecode into graphs guarded by what it assumed (shapes, globals), recompiles when a guard
fails, goes dynamic-shaped after a second shape, and replays Python side effects on every call.
Randomness comes from a global generator that ``torch.manual_seed`` resets.
The seed answers never asked it; in its own words PyTorch has "dynamic computation graphs" and JAX is
"based on NumPy", which hides the difference that bites: JAX traces once per shape (next to this file).
Run: ``python -m diptych.cookbook.jit.torch`` (prints one JSON line; ``--fast`` changes nothing).
"""

import argparse
import json

import torch

compiles, programs, body_runs = [], [], []


def counting_backend(graph_module, example_inputs):  # a torch.compile backend that only counts and keeps the graph
    compiles.append(len(example_inputs))
    programs.append(len(graph_module.code))
    return graph_module.forward  # run the captured graph eagerly: no C++ toolchain needed


def f(x):
    return (torch.sin(x) * 2).sum()


def noisy(x):
    body_runs.append(1)  # a Python side effect in the function body
    return x * 2


def main():
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).add_argument("--fast", action="store_true")
    compiled = torch.compile(f, backend=counting_backend)
    sizes = [3, 3, 4, 5, 6]
    results = [compiled(torch.arange(float(n))) for n in sizes]
    equal = all(torch.equal(r, f(torch.arange(float(n)))) for r, n in zip(results, sizes, strict=True))
    n_compiles = len(compiles)
    compiled_noisy = torch.compile(noisy, backend=counting_backend)
    for _ in range(3):
        compiled_noisy(torch.ones(3))  # replayed every call (and, as it mutates a global list, recompiled too)
    retrace = {
        "calls": len(sizes),
        "compiles": n_compiles,
        "side_effect_runs_in_3_calls": len(body_runs),
        "side_effect_compiles": len(compiles) - n_compiles,
    }

    data = torch.randn(1000, 100)  # a dataset the function reads as a global
    read_global = torch.compile(lambda: (data * 2).sum(), backend=counting_backend)
    before = read_global().item()
    data = torch.zeros(1000, 100)  # noqa: F841  rebinding fails dynamo's guard on the global: it recompiles
    after = read_global().item()
    as_argument = torch.compile(lambda d: (d * 2).sum(), backend=counting_backend)
    as_argument(torch.randn(1000, 100))
    program_chars = {"closure": programs[-2], "argument": programs[-1]}  # a captured tensor is a graph input

    torch.manual_seed(0)
    a, b = torch.rand(2), torch.rand(2)  # the global generator advances: a != b
    torch.manual_seed(0)
    rng = {"same_call_twice_equal": torch.equal(a, b), "reseed_reproduces": torch.equal(torch.rand(2), a)}
    print(
        json.dumps(
            {
                "recipe": "jit",
                "framework": "torch",
                "compiled_equals_eager": equal,
                **retrace,
                "global_changed_to_zeros_read_as": after,
                "global_before": before,
                "program_chars": program_chars,
                "rng": rng,
            }
        )
    )


if __name__ == "__main__":
    main()

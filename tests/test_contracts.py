"""The contracts hold: both twins implement exactly the Trainer protocol, every task owns an
objective, and the package's modules import each other without a cycle."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import diptych
from diptych.contracts import Trainer
from diptych.objectives import Objective
from diptych.tasks import TASKS


def public_api(cls) -> dict[str, str]:
    """Every public method (and ``__init__``) of ``cls`` with its parameters: names, kinds and defaults.
    (Annotations are left out: a tensor is ``torch.Tensor`` in one twin and ``jax.Array`` in the other.)"""
    members = {
        name: member
        for name, member in vars(cls).items()
        if callable(member) and (not name.startswith("_") or name == "__init__")
    }
    return {
        name: str(
            inspect.signature(member).replace(
                parameters=[
                    p.replace(annotation=inspect.Parameter.empty) for p in inspect.signature(member).parameters.values()
                ],
                return_annotation=inspect.Signature.empty,
            )
        )
        for name, member in members.items()
    }


def protocol_api() -> dict[str, str]:
    return public_api(Trainer)


def test_both_twins_implement_exactly_the_trainer_protocol():
    from diptych.backends import load_backend

    expected = protocol_api()
    assert {
        "__init__",
        "train_step",
        "predict",
        "losses_to_numpy",
        "reset_state",
        "export_weights",
        "load_weights",
        "export_opt_state",
        "load_opt_state",
        "num_params",
    } <= set(expected)
    for framework in ("torch", "jax"):
        got = public_api(load_backend(framework).train.Trainer)
        assert set(got) == set(expected), (framework, set(got) ^ set(expected))
        for name, sig in expected.items():
            assert got[name] == sig, f"{framework} Trainer.{name}{got[name]} != protocol {name}{sig}"


def test_the_signature_check_fails_when_one_twin_changes_a_method():
    from diptych.backends import load_backend

    class Changed(load_backend("jax").train.Trainer):
        def predict(self, x, chunk=256):  # the kind of drift the test exists for
            return super().predict(x)

    api = {**public_api(load_backend("jax").train.Trainer), **public_api(Changed)}
    assert api["predict"] != protocol_api()["predict"]


def test_every_task_owns_an_objective_that_decides_its_target():
    for task in TASKS.values():
        obj = task.objective
        assert isinstance(obj, Objective) and obj.metric and obj.describe_target()
    cnn, lm = TASKS["mnist-cnn"].objective, TASKS["chars-lstm"].objective
    assert cnn.reached({"test_accuracy": 0.991}, cnn.bar({})) and not cnn.reached({"test_accuracy": 0.98}, 0.99)
    bar = lm.bar({"unigram_bpc": 4.0})  # half the unigram model's bits/char
    assert bar == 2.0 and lm.reached({"test_bpc": 1.9}, bar) and not lm.reached({"test_bpc": 2.1}, bar)


def _module_name(path: Path, src: Path) -> str:
    parts = path.relative_to(src.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str, is_package: bool, modules: set[str]) -> set[str]:
    """Every ``diptych`` module ``path`` imports, at module level or inside functions. ``from pkg import
    x`` depends on the module ``pkg.x`` when there is one, else on ``pkg`` itself."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                package = name.split(".") if is_package else name.split(".")[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    src = Path(diptych.__file__).parent
    files = {_module_name(p, src): p for p in src.rglob("*.py")}
    return {name: _imports(p, name, p.name == "__init__.py", set(files)) for name, p in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt] if nxt in path else [node, nxt]
            if nxt not in state:
                found = visit(nxt, path + [nxt])
                if found:
                    return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def test_no_module_of_the_package_imports_another_in_a_cycle():
    graph = import_graph()
    assert "diptych.driver" in graph and "diptych.bench.orchestrate" in graph
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


@pytest.mark.parametrize("graph,cycle", [({"a": {"b"}, "b": {"a"}}, True), ({"a": {"b"}, "b": set()}, False)])
def test_the_cycle_finder_finds_cycles(graph, cycle):
    assert (find_cycle(graph) is not None) == cycle


# ----------------------------------------------------------------------------- layering

FRONT = ("diptych.cli", "diptych.__main__")  # the command line's entry points
APPLICATIONS = ("diptych.commands", "diptych.bench")  # what the command line runs: above the library
MAX_LINES = 450


def _in(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def layering_violations(graph: dict[str, set[str]]) -> list[str]:
    """``a -> b`` for each import that breaks the layers: the library imports no command, no part of the
    benchmark and not the CLI; the commands and the benchmark never import the CLI; only ``__main__`` does."""
    bad = []
    for module, deps in sorted(graph.items()):
        for dep in sorted(deps):
            library = not _in(module, FRONT + APPLICATIONS)
            if (library and _in(dep, APPLICATIONS)) or (dep == "diptych.cli" and module != "diptych.__main__"):
                bad.append(f"{module} -> {dep}")
    return bad


def test_the_layers_hold():
    graph = import_graph()
    assert {"diptych.commands.train", "diptych.bench.worker", "diptych.driver"} <= set(graph)
    assert layering_violations(graph) == []


@pytest.mark.parametrize(
    "edge",
    [
        ("diptych.driver", "diptych.commands.train"),
        ("diptych.records", "diptych.bench.report"),
        ("diptych.commands.train", "diptych.cli"),
    ],
)
def test_the_layering_check_finds_an_upward_import(edge):
    graph = import_graph()
    graph[edge[0]] = graph[edge[0]] | {edge[1]}
    assert layering_violations(graph) == [f"{edge[0]} -> {edge[1]}"]


def test_no_module_is_over_450_lines():
    """One job per file: a module that grows past this is where every change collides. (The cookbook's
    standalone recipes are programs to read side by side, exempt.)"""
    src = Path(diptych.__file__).parent
    long = {
        str(p.relative_to(src)): n
        for p in src.rglob("*.py")
        if "cookbook" not in p.relative_to(src).parts and (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}

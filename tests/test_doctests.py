"""The examples in the package's docstrings run, and show what they claim (``doctest``); the
README-style guides' snippets are run by the tests of the features they describe."""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest

import diptych

SRC = Path(diptych.__file__).parent
EXAMPLE = re.compile(r"^\s*>>> (?!.*doctest: \+SKIP)", re.MULTILINE)  # an example that runs
# The examples that run, counted when this floor was set (84 in 22 modules): fewer means some were dropped.
LEAST_EXAMPLES = 84


def _modules() -> dict[str, Path]:
    """Every importable module of the package: its name and file."""
    names = {}
    for p in sorted(SRC.rglob("*.py")):
        rel = p.relative_to(SRC)
        if rel.parts[0] == "cookbook" and rel.name != "__init__.py" or p.name == "__main__.py":
            continue  # standalone programs: run by their own tests, not imported
        parts = rel.with_suffix("").parts
        names[".".join(("diptych", *parts[: -1 if parts[-1] == "__init__" else None]))] = p
    return names


MODULES = _modules()
WITH_EXAMPLES = sorted(name for name, path in MODULES.items() if EXAMPLE.search(path.read_text(encoding="utf-8")))


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has '>>> ' in its text but no docstring example doctest runs"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (output above)"


def test_the_docstrings_have_examples():
    """A change that drops the examples (or stops this file from finding them) must not pass silently: every
    module in which doctest finds examples that run is one the test above runs, and there are as many as
    there were. (Examples marked ``+SKIP`` show a call that needs a trained model; they run nowhere.)"""
    finder = doctest.DocTestFinder()

    def runnable(name: str) -> int:
        tests = finder.find(importlib.import_module(name))
        return sum(not e.options.get(doctest.SKIP) for t in tests for e in t.examples)

    counts = {name: runnable(name) for name in MODULES}
    assert sorted(name for name, n in counts.items() if n) == WITH_EXAMPLES
    assert sum(counts.values()) >= LEAST_EXAMPLES, counts

"""The examples in the package's docstrings run, and show what they claim (``doctest``); the
README-style guides' snippets are run by the tests of the features they describe."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

import diptych

SRC = Path(diptych.__file__).parent


def _modules() -> list[str]:
    names = []
    for p in sorted(SRC.rglob("*.py")):
        rel = p.relative_to(SRC)
        if rel.parts[0] == "cookbook" and rel.name != "__init__.py" or p.name == "__main__.py":
            continue  # standalone programs: run by their own tests, not imported
        names.append("diptych." + ".".join(rel.with_suffix("").parts).removesuffix(".__init__"))
    return names


MODULES = _modules()


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (output above)"


def test_the_docstrings_have_examples():
    """A change that drops the examples (or stops this file from finding them) must not pass silently."""
    finder = doctest.DocTestFinder()
    examples = sum(len(t.examples) for n in MODULES for t in finder.find(importlib.import_module(n)))
    assert examples >= 15, examples

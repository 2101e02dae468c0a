"""The fuzz suite's own check can fail: a reader that refuses every input (or loads every one) fails its
test through the ``outcome_counts`` fixture, and every fuzz test module uses that fixture."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import fuzzing
import pytest
from fuzzing import check_outcomes, fuzz_settings, loads_or_refuses, outcome_counts, report_outcomes  # noqa: F401
from hypothesis import given
from hypothesis import strategies as st

from diptych.errors import DiptychError

HERE = Path(__file__).parent

# A fuzz module as the suite writes them, with two readers: one that refuses every input, one that
# loads every input (the check wants both outcomes from each).
MODULE = """
from fuzzing import fuzz_settings, loads_or_refuses, outcome_counts, report_outcomes  # noqa: F401
from hypothesis import given, strategies as st
from diptych.errors import DiptychError


def refuse(raw):
    raise DiptychError("not a file this reader reads")


@fuzz_settings(50)
@given(raw=st.binary(max_size=16))
def test_refuses_everything(raw):
    loads_or_refuses("refuser", lambda: refuse(raw))


@fuzz_settings(50)
@given(raw=st.binary(max_size=16))
def test_loads_everything(raw):
    loads_or_refuses("loader", lambda: len(raw))
"""


def _byte_reader(raw: bytes) -> int:
    """A toy reader: a file of at least 4 bytes whose first is 0x7f loads; anything else is refused."""
    if len(raw) < 4 or raw[0] != 0x7F:
        raise DiptychError("not a toy file")
    return len(raw)


def test_a_reader_that_refuses_everything_fails_the_suite(tmp_path):
    (tmp_path / "test_toy.py").write_text(MODULE)
    src = Path(__file__).resolve().parents[2] / "src"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(src)]), "DIPTYCH_FUZZ_EXAMPLES": ""},
    )
    out = proc.stdout
    assert proc.returncode == 1, out[-3000:]
    assert "2 passed, 2 errors" in out, out[-3000:]  # each test's own property held; the counts did not
    assert "refuser: loaded 0 of 50 cases, expected >= 1" in out, out[-3000:]
    assert "loader: refused 0 of 50 cases, expected >= 1" in out, out[-3000:]


def test_the_check_wants_each_outcome_in_its_share_of_cases():
    counts = Counter()
    for raw in [b"\x7fabc"] * 3 + [b"junk"] * 97:
        loads_or_refuses("toy", lambda raw=raw: _byte_reader(raw), outcomes=counts)
    assert counts == Counter({("toy", "loaded"): 3, ("toy", "refused"): 97})
    check_outcomes(counts)  # 3% loaded: above the 2% minimum
    counts["toy", "refused"] += 100  # 1.5% loaded
    with pytest.raises(AssertionError, match="toy: loaded 3 of 200 cases, expected >= 4"):
        check_outcomes(counts)
    with pytest.raises(AssertionError, match="cli: reached the work 0 of 5 cases"):
        check_outcomes(Counter({("cli", "refused"): 5}))  # the CLI's outcomes are its own


@fuzz_settings(60)
@given(raw=st.binary(max_size=8) | st.binary(min_size=4, max_size=8).map(lambda b: b"\x7f" + b))
def test_a_toy_reader_passes_through_the_fixture(raw):
    """The same fixture over a reader that does both: the counts come from hypothesis's own cases."""
    loads_or_refuses("toy-fixture", lambda: _byte_reader(raw))


def test_every_fuzz_module_checks_its_outcomes():
    # every module that fuzzes a reader (the long profile only re-runs the others)
    modules = sorted(p.stem for p in HERE.glob("test_*.py") if "@fuzz_settings(" in p.read_text())
    assert {"test_fuzz_readers", "test_fuzz_cli", "test_fuzz_outcomes"} <= set(modules)
    for name in modules:
        module = importlib.import_module(name)
        assert getattr(module, "outcome_counts", None) is fuzzing.outcome_counts, (
            f"{name} does not import the outcome_counts fixture from fuzzing"
        )

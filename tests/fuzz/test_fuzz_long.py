"""The long fuzz profile (the full tier): the whole fuzz suite again with many more cases per test, each
reader still held to "loads, or one line", and each still seeing both outcomes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = 1000  # per fuzz test (the fast tier runs 60-250); 2000 took 191 s of the 45-minute CI budget


@pytest.mark.full
@pytest.mark.timeout(1800)
def test_the_fuzz_suite_holds_with_many_more_cases(tmp_path):
    here = Path(__file__).parent
    env = {**os.environ, "DIPTYCH_FUZZ_EXAMPLES": str(EXAMPLES), "DIPTYCH_FUZZ_REPORT": str(tmp_path / "outcomes.tsv")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(here), "-m", "not full", "-q", "-p", "no:cacheprovider", "--timeout=1500"],
        capture_output=True,
        text=True,
        env=env,
        cwd=here.parents[1],
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    counts = [line.split("\t") for line in (tmp_path / "outcomes.tsv").read_text().splitlines()]
    assert sum(int(n) for _, _, n in counts) >= 5 * EXAMPLES  # the long profile ran, reader by reader

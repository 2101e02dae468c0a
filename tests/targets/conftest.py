"""The full tier's results table: every target run adds its row, and the session writes them all to
``runs/test-full/results.md`` and ``results.json`` (``$DIPTYCH_RESULTS`` names another folder) and prints the
table at the end, so a regression in a score or in time is visible from one run to the next."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = ("task", "framework", "score", "target", "reached", "epochs", "wall s", "samples/s", "cross-twin")
_ROWS: list[dict] = []


def row(run: dict, cross: str) -> dict:
    """One row of the table from a run record (``run.json``) and the other twin's agreement."""
    score = f"{run['test_bpc']:.3f} bits/char" if "test_bpc" in run else f"{100 * run['test_accuracy']:.2f}%"
    target = f"<= {run['target_bpc']:.3f}" if "target_bpc" in run else f"{100 * run['target_accuracy']:.1f}%"
    return {
        "task": run["task"],
        "framework": run["framework"],
        "score": score,
        "target": target,
        "reached": "yes" if run["reached_target"] else "NO",
        "epochs": run["config"]["epochs"],
        "wall s": round(run["wall_seconds"], 1),
        "samples/s": round(run["samples_per_second"]),
        "cross-twin": cross,
        "run": run,
    }


@pytest.fixture
def results():
    """``results(run, cross)`` adds a target run's row to the session's table."""

    def add(run: dict, cross: str) -> None:
        _ROWS.append(row(run, cross))

    return add


def table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(r[c]) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def pytest_sessionfinish(session, exitstatus):
    if not _ROWS:
        return
    out = Path(os.environ.get("DIPTYCH_RESULTS") or ROOT / "runs" / "test-full")
    out.mkdir(parents=True, exist_ok=True)
    rows = sorted(_ROWS, key=lambda r: (r["task"], r["framework"]))
    (out / "results.md").write_text("# Full-budget targets\n\n" + table(rows) + "\n")
    (out / "results.json").write_text(json.dumps([r["run"] for r in rows], indent=1))


def pytest_terminal_summary(terminalreporter):
    if _ROWS:
        terminalreporter.section("full-budget targets")
        terminalreporter.write_line(table(sorted(_ROWS, key=lambda r: (r["task"], r["framework"]))))

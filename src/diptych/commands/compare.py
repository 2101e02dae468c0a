"""``diptych compare``: both twins, identical batches, run one after the other.

Each twin trains in its own subprocess, sequentially: two framework processes at once on a
small machine slow each other by an order of magnitude, and a fresh process gives each twin
its own clean peak-memory figure. The result is a side-by-side table and a PNG plot of test
accuracy against wall time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click

from diptych.commands.options import FRAMEWORKS_OPTION, TASK, training_options
from diptych.errors import DiptychError
from diptych.fsio import ensure_writable_dir, write_figure
from diptych.overrides import parse_sets
from diptych.progress import table_console
from diptych.records import read_json, write_json
from diptych.tasks import TASKS

ROWS = [  # (label, key, format)
    ("test accuracy", "test_accuracy", lambda v: f"{100 * v:.2f}%"),
    ("reached target", "reached_target", lambda v: "yes" if v else "NO"),
    ("wall time", "wall_seconds", lambda v: f"{v:.1f} s"),
    ("compile / first step", "compile_seconds", lambda v: f"{v:.2f} s"),
    ("steady samples/s", "samples_per_second", lambda v: f"{v:,.0f}"),
    ("peak memory (RSS)", "peak_rss_mb", lambda v: f"{v:,.0f} MB"),
    ("parameters", "num_params", lambda v: f"{v:,}"),
]


def _cli_args(options: dict) -> list[str]:
    args = []
    for key, value in options.items():
        flag = "--set" if key == "sets" else "--" + key.replace("_", "-")
        if value is None or value is False or (key == "precision" and value == "fp32"):
            continue
        if isinstance(value, tuple | list):  # a repeatable option: --set hidden=64 --set cell=gru
            args += [a for v in value for a in (flag, str(v))]
            continue
        args += [flag] if value is True else [flag, str(value)]
    return args


@click.command()
@TASK
@training_options
@FRAMEWORKS_OPTION
@click.option("--out", type=click.Path(file_okay=False), help="Folder (default runs/TASK/compare).")
def compare(task, frameworks, out, as_json, no_progress, **kw):
    """Train TASK in both twins on identical batches, one after the other; table + plot."""
    TASKS[task].with_model_overrides(parse_sets(kw["sets"]))  # a bad --set: one line here, not one per twin
    out = ensure_writable_dir(out or f"runs/{task}/compare")
    compare_frameworks(task, frameworks, out, kw, as_json=as_json, progress=not no_progress)


def compare_frameworks(
    task: str, frameworks: list[str], out: Path, options: dict, as_json: bool = False, progress: bool = True
) -> dict:
    runs = {}
    for fw in frameworks:
        cmd = [
            sys.executable,
            "-m",
            "diptych",
            "train",
            task,
            "--framework",
            fw,
            "--out",
            str(out / fw),
            *_cli_args(options),
        ]
        if not progress:
            cmd.append("--no-progress")
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise DiptychError(f"the {fw} run failed (exit {proc.returncode}); its error is printed above")
        runs[fw] = read_json(out / fw / "run.json")
    plot = plot_accuracy(runs, out / "accuracy_vs_time.png")
    summary = {"task": task, "runs": runs, "plot": str(plot)}
    write_json(out / "compare.json", summary)
    if as_json:
        print(json.dumps(summary))
    else:
        print_table(runs, task)
        print(f"plot: {plot}")
    return summary


def print_table(runs: dict[str, dict], task: str) -> None:
    from rich.table import Table

    table = Table(title=f"{task}: same data, same batches, same order")
    table.add_column("")
    for fw in runs:
        table.add_column(fw, justify="right")
    for label, key, fmt in ROWS:
        table.add_row(label, *(fmt(r[key]) for r in runs.values()))
    table_console().print(table)


def plot_accuracy(runs: dict[str, dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    target = None
    for fw, run in runs.items():
        t = [0.0] + [e["wall_seconds"] for e in run["epochs"]]
        acc = [None] + [100 * e["test_accuracy"] for e in run["epochs"]]
        ax.plot(t[1:], acc[1:], marker="o", markersize=3, label=f"{fw} ({100 * run['test_accuracy']:.2f}%)")
        target = run.get("target_accuracy", target)
    if target:
        ax.axhline(100 * target, color="gray", linestyle="--", linewidth=1, label=f"target {100 * target:.1f}%")
    task = next(iter(runs.values()))["task"]
    ax.set(
        title=f"{task}: test accuracy vs wall time (compile included)",
        xlabel="wall time (s)",
        ylabel="test accuracy (%)",
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    write_figure(fig, path)
    plt.close(fig)
    return path

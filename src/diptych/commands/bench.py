"""``diptych bench`` (the interleaved benchmark of the twins, :mod:`diptych.bench`) and ``diptych report``
(a report rebuilt from saved records)."""

from __future__ import annotations

from pathlib import Path

import click

from diptych.commands.options import FRAMEWORKS_OPTION, SET_OPTION, TASK, finite, precisions
from diptych.fsio import ensure_writable_dir


@click.command()
@TASK
@FRAMEWORKS_OPTION
@click.option("--repeats", type=click.IntRange(1, 1000), default=3, show_default=True, help="Interleaved rounds.")
@click.option(
    "--burst",
    "seconds",
    type=click.FloatRange(0.1, 3600),
    default=3.0,
    show_default=True,
    callback=finite,
    help="Seconds of steady-state training per burst.",
)
@click.option("--baseline", is_flag=True, help="Add the seed-faithful PyTorch recipe (mnist-cnn only).")
@click.option("--no-train", is_flag=True, help="Bursts only: skip the time-to-target runs.")
@click.option(
    "--precision",
    default="fp32",
    show_default=True,
    callback=lambda ctx, param, value: precisions(value),
    help="Compute precision of the twins, or a comma list for rows in each, e.g. fp32,bf16 "
    "(the seed baseline and the twins with its recipe stay fp32, as written).",
)
@click.option("--data-dir", type=click.Path(file_okay=False), help="Folder with the dataset files.")
@click.option("--out", type=click.Path(file_okay=False), help="Folder (default runs/TASK/bench).")
@click.option("--augment", help="Image tasks: also time steps with this augmentation (default or OPS); train with it.")
@click.option(
    "--device",
    type=click.Choice(["cpu", "gpu"]),
    default="cpu",
    show_default=True,
    help="Where every contestant runs (the twins and the seed baseline alike).",
)
@click.option(
    "--eval-every",
    type=click.IntRange(min=1),
    help="Evaluate every N steps until the target, off the training clock (default: ten times per epoch).",
)
@click.option("--profile", is_flag=True, help="Trace steady steps of each twin; top operations side by side.")
@SET_OPTION
@click.option(
    "--limit", type=click.IntRange(min=1), hidden=True, help="Quick checks: the first N samples of each split."
)
@click.option("--epochs", type=click.IntRange(min=1), hidden=True, help="Quick checks: every contestant's epochs.")
def bench(task, out, no_train, **kw):
    """Benchmark the twins side by side (interleaved); writes report.html and report.md."""
    from diptych.bench import run_bench
    from diptych.progress import console

    out = ensure_writable_dir(out or f"runs/{task}/bench")
    result = run_bench(task, out=out, train=not no_train, log=lambda line: console.print(f"[dim]{line}[/]"), **kw)
    print_bench(result)
    click.echo(f"report: {out / 'report.html'} and {out / 'report.md'}")


@click.command()
@click.argument("dirs", nargs=-1, required=True, type=click.Path())
@click.option("--out", type=click.Path(file_okay=False), default="runs/report", show_default=True)
def report(dirs, out):
    """Rebuild report.html/report.md from saved bench.json or run.json files under DIRS."""
    from diptych.bench import rebuild

    result = rebuild(list(dirs), out)
    print_bench(result)
    click.echo(f"report: {Path(out) / 'report.html'} and {Path(out) / 'report.md'}")


def print_bench(result: dict) -> None:
    """The benchmark's headline, its table, the ratios and the profiled top operations, on the terminal."""
    from rich.table import Table

    from diptych.bench.report import headline, profile_tables, table_rows, title
    from diptych.progress import table_console
    from diptych.stephooks import format_top_ops

    headers, rows = table_rows(result)
    table = Table(title=f"diptych bench {title(result)}")
    for h in headers:
        table.add_column(h, justify="left" if not h else "right")
    for r in rows:
        table.add_row(*r)
    console = table_console()
    for line in headline(result):
        click.echo(line.replace("**", ""))
    console.print(table)
    for k, v in result.get("ratios", {}).items():
        console.print(f"{k.replace('_', ' ')}: {v:.2f}x")
    for group, profs in profile_tables(result):
        click.echo(f"top operations of one training step ({group}):")
        click.echo("\n".join(format_top_ops({n: p["top_ops"] for n, p in profs.items()})))

"""``diptych parity``: prove the twins agree on a task (:func:`diptych.parity.run_parity`); exit 1 if not."""

from __future__ import annotations

import json

import click

from diptych.commands.options import SEED, SET_OPTION, TASK, finite


@click.command()
@TASK
@click.option("--steps", type=click.IntRange(1, 10**6), default=100, show_default=True, help="Training steps (d).")
@click.option(
    "--optimizer",
    type=click.Choice(["sgd", "adam", "adamw"]),
    help="Default: the task's own (adamw for the transformers, with their clipping and weight decay; else adam).",
)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True, callback=finite)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False), help="Folder with the dataset files.")
@SET_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def parity(task, steps, optimizer, lr, seed, data_dir, sets, as_json):
    """Prove the twins agree on TASK: logits, gradients, one step, N steps. Exit 1 if not."""
    from diptych.parity import print_report, run_parity

    report = run_parity(task, steps=steps, optimizer=optimizer, lr=lr, seed=seed, data_dir=data_dir, sets=sets)
    if as_json:
        click.echo(json.dumps(report.as_dict()))
    else:
        print_report(report)
    if not report.ok:
        w = report.worst()
        click.echo(
            f"diptych: parity failed: {w.check} {w.tensor}: {w.metric} diff {w.value:.2e} > {w.tolerance:.0e}", err=True
        )
        return 1
    return 0

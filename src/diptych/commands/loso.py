"""``diptych loso``: the leave-one-speaker-out protocol of a speech task (:mod:`diptych.loso`)."""

from __future__ import annotations

import json

import click

from diptych.commands.options import FRAMEWORKS_OPTION, JSON_OPTION, TASK
from diptych.fsio import ensure_writable_dir


@click.command("loso")
@TASK
@FRAMEWORKS_OPTION
@click.option("--data-dir", type=click.Path(file_okay=False), help="Folder with the FSDD recordings.")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True), help="Epochs per fold (default: the task's).")
@click.option("--batch-size", type=click.IntRange(min=1), help="Batch (default: the task's).")
@click.option("--speakers", help="Comma-separated speakers to hold out, one at a time (default: every speaker).")
@click.option(
    "--seeds", type=click.IntRange(min=1), default=1, show_default=True, help="Trainings per fold and twin, averaged."
)
@click.option("--out", type=click.Path(file_okay=False), help="Folder (default runs/TASK/loso).")
@click.option("--no-progress", is_flag=True, help="Hide the progress bars.")
@JSON_OPTION
def loso_cmd(task, frameworks, data_dir, epochs, batch_size, speakers, seeds, out, no_progress, as_json):
    """Train TASK once per speaker on the other speakers, test on the one left out; a table per speaker
    and twin, the mean and the lowest, OUT/loso.json and the plot OUT/loso.png."""
    from diptych.loso import leave_one_speaker_out, table_rows
    from diptych.progress import table_console

    out = ensure_writable_dir(out or f"runs/{task}/loso")
    only = [s.strip() for s in speakers.split(",") if s.strip()] if speakers else None
    record = leave_one_speaker_out(task, frameworks, out, data_dir, epochs, batch_size, only, not no_progress, seeds)
    if as_json:
        click.echo(json.dumps(record))
        return
    from rich.table import Table

    each = f", the mean of {seeds} seeds" if seeds > 1 else ""
    table = Table(title=f"{task}: accuracy on the speaker left out of training{each}")
    table.add_column("held-out speaker")
    for fw in frameworks:
        table.add_column(fw, justify="right")
    for row in table_rows(record):
        table.add_row(*row)
    table_console().print(table)
    if record["target"]:
        mean, lowest = record["target"]
        click.echo(f"target: mean >= {100 * mean:.0f}%, every speaker >= {100 * lowest:.0f}%")
    click.echo(f"wrote {out / 'loso.json'} and {out / 'loso.png'}")

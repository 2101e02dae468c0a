"""``diptych list`` (the tasks) and ``diptych eval`` (saved weights of either twin, scored by either twin)."""

from __future__ import annotations

import json

import click

from diptych.backends import FRAMEWORKS
from diptych.commands.options import TASK
from diptych.tasks import TASKS

COLUMNS = ("task", "dataset", "model", "params", "target", "reference", "defaults")


def task_rows() -> list[dict]:
    """One row per task: dataset, model, parameter count, target, reference result and default recipe."""
    sized = [t.objective.sized(t) for t in TASKS.values()]  # a language model: the default corpus's vocabulary
    return [
        {
            "task": t.name,
            "dataset": t.dataset,
            "model": t.model.describe(),
            "params": t.model.num_params(),
            "target": t.objective.describe_target(),
            "target_accuracy": t.objective.target_accuracy,
            "reference": t.objective.reference,
            "epochs": t.budget.epochs,
            "batch_size": t.budget.batch_size,
            "optimizer": t.optimizer.name,
            "lr": t.optimizer.lr,
        }
        for t in sized
    ]


def _cells(r: dict) -> list[str]:
    defaults = f"{r['optimizer']} lr {r['lr']:g}, {r['epochs']} ep x {r['batch_size']}"
    return [r["task"], r["dataset"], r["model"], f"{r['params']:,}", r["target"], r["reference"], defaults]


def markdown_table(rows: list[dict]) -> str:
    """The rows as a Markdown table (``diptych list --markdown``; docs/tasks.md is made from it)."""
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---:" if c == "params" else "---" for c in COLUMNS) + "|",
    ]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in _cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def keys_table() -> str:
    """What ``--set`` takes, per kind of model, as a Markdown table (``diptych list --keys``; docs/running.md)."""
    from diptych.overrides import choices_of, keys

    kinds: dict[str, list] = {}
    for t in TASKS.values():
        kinds.setdefault(t.model.kind, []).append(t)
    lines = ["| model | tasks | keys (`--set KEY=VALUE`) |", "|---|---|---|"]
    for kind, tasks in kinds.items():
        spec = tasks[0].model
        words = {"int": "int", "float": "number", "bool": "true/false", "ints": "ints, comma-separated"}
        options = choices_of(spec)
        cells = [
            f"`{key}` ({'/'.join(options[key]) if key in options else words.get(what, 'word')})"
            for key, what in keys(spec).items()
        ]
        lines.append(f"| {kind} | {', '.join(t.name for t in tasks)} | {', '.join(cells)} |")
    return "\n".join(lines)


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--markdown", is_flag=True, help="Print a Markdown table (as in docs/tasks.md).")
@click.option("--keys", "show_keys", is_flag=True, help="Print what --set takes per kind of model (Markdown).")
def list_tasks(as_json, markdown, show_keys):
    """Show the tasks: dataset, model, parameter count, target and reference result."""
    if show_keys:
        click.echo(keys_table())
        return
    rows = task_rows()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if markdown:
        click.echo(markdown_table(rows))
        return
    from rich.table import Table

    from diptych.progress import table_console

    table = Table(title="diptych tasks")
    for col in COLUMNS:
        table.add_column(col, justify="right" if col == "params" else "left")
    for r in rows:
        table.add_row(*_cells(r))
    table_console().print(table)


@click.command("eval")
@TASK
@click.option("--framework", type=click.Choice(FRAMEWORKS), required=True, help="Which twin evaluates.")
@click.option("--weights", type=click.Path(dir_okay=False), required=True, help="A weights.safetensors file.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Folder with the dataset files.")
@click.option(
    "--text", type=click.Path(dir_okay=False), help="Language-model tasks: the text the model was trained on."
)
@click.option("--split", help="fsdd: official (default) or speaker:NAME.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def eval_cmd(task, framework, weights, data_dir, text, split, as_json):
    """Test accuracy of saved weights (trained by either twin) in FRAMEWORK."""
    from diptych.driver import evaluate_weights

    result = evaluate_weights(task, framework, weights, data_dir, text=text, split=split)
    result.pop("predictions")
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(f"{task} [{framework}] {weights}: {TASKS[task].objective.score_line(result)}")

"""Click options and checks shared by several commands (``train``, ``compare``, ``bench``, ``parity``, ...).

Every check turns a bad value into a one-line error before any work starts: click's own types refuse
what is out of range, and the callbacks here refuse what click lets through (NaN, unknown names).
"""

from __future__ import annotations

import math

import click

from diptych.backends import FRAMEWORKS
from diptych.errors import DiptychError
from diptych.tasks import OPTIMIZERS, SCHEDULES, TASKS

TASK = click.argument("task", type=click.Choice(list(TASKS)), metavar="TASK")
SEED = click.IntRange(0, 2**63 - 1)  # what numpy, torch and JAX all accept (JAX's key overflows above 2^63 - 1)
PRECISIONS = ("fp32", "bf16")


def finite(ctx, param, value):
    """Ranges of click.FloatRange let NaN through (every comparison with NaN is false): refuse it."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number", ctx=ctx, param=param)
    return value


def _epochs(ctx, param, value):
    """A finite number of epochs; a whole one stays an int (3, not 3.0, in records and messages)."""
    value = finite(ctx, param, value)
    return int(value) if value is not None and value == int(value) else value


def _frameworks(ctx, param, value: str) -> list[str]:
    """``--frameworks torch,jax`` -> ``["torch", "jax"]``, refusing unknown names."""
    names = [f.strip() for f in value.split(",") if f.strip()]
    bad = [f for f in names if f not in FRAMEWORKS]
    if bad or not names:
        raise DiptychError(
            f"unknown framework {bad[0] if bad else value!r} in --frameworks; choose from {', '.join(FRAMEWORKS)}"
        )
    return names


def precisions(value: str) -> list[str]:
    """``--precision fp32,bf16`` -> ``["fp32", "bf16"]`` (each once), refusing unknown names."""
    names = [p.strip() for p in value.split(",") if p.strip()]
    bad = [p for p in names if p not in PRECISIONS]
    if bad or not names:
        raise DiptychError(f"unknown precision {bad[0] if bad else value!r} in --precision; choose fp32, bf16 or both")
    return list(dict.fromkeys(names))


FRAMEWORKS_OPTION = click.option(
    "--frameworks",
    default=",".join(FRAMEWORKS),
    show_default=True,
    callback=_frameworks,
    help="Comma-separated twins to run.",
)


def twin_option(help: str):
    """``--framework``: the one twin that runs (torch unless named)."""
    return click.option("--framework", type=click.Choice(FRAMEWORKS), default="torch", show_default=True, help=help)


SET_OPTION = click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a field of the task's model spec, e.g. --set hidden=64 (repeatable; keys: docs/running.md, "
    "or any bad key lists them). Recorded in run.json and the weights.",
)
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")


def training_options(f):
    """The options of a training run (``train`` and ``compare``); each lands in :class:`~diptych.driver.RunConfig`."""
    options = [
        click.option(
            "--epochs",
            type=click.FloatRange(0, 10**6, min_open=True),
            callback=_epochs,
            help="Epochs (default: the task's); a fraction such as 0.5 trains part of the last epoch.",
        ),
        click.option("--batch-size", type=click.IntRange(1, 2**31 - 1), help="Global batch (default: the task's)."),
        click.option("--lr", type=click.FloatRange(min=0, min_open=True), callback=finite, help="Peak learning rate."),
        click.option("--optimizer", type=click.Choice(OPTIMIZERS), help="Optimizer (default: the task's)."),
        click.option("--schedule", type=click.Choice(SCHEDULES), help="Learning-rate schedule."),
        click.option(
            "--label-smoothing",
            type=click.FloatRange(0, 1, max_open=True),
            callback=finite,
            help="Classification: smooth the training targets by this much (default: the task's).",
        ),
        click.option("--seed", type=SEED, help="Seed for initialization and batch order (default 0)."),
        click.option("--data-dir", type=click.Path(file_okay=False), help="Folder with the dataset files."),
        click.option(
            "--text",
            type=click.Path(dir_okay=False),
            help="Language-model tasks: a UTF-8 text file (default: Python's bundled help text).",
        ),
        click.option("--split", help="fsdd: official (default) or speaker:NAME (test on one held-out speaker)."),
        click.option(
            "--augment",
            help="Image tasks: none, default (the task's) or OPS, a comma list of shift, "
            "rotate, scale, erase, flip, mixup, cutmix with optional strengths, e.g. shift:2,rotate:10.",
        ),
        click.option("--image-size", type=int, help="image-cnn: resize your images to this side (default 32)."),
        click.option("--channels", type=int, help="image-cnn: 1 (grey, default) or 3 (RGB)."),
        click.option(
            "--val-fraction",
            type=float,
            help="image-cnn on PATH/<class>/: the share of each class held out for testing (default 0.2).",
        ),
        click.option(
            "--data-workers",
            type=click.IntRange(min=0),
            help="Packed data (--data-dir from `diptych data pack`): background reader processes (default: by cores).",
        ),
        click.option("--compile", is_flag=True, help="torch: torch.compile the model (JAX always jit-compiles)."),
        click.option(
            "--precision",
            type=click.Choice(PRECISIONS),
            default="fp32",
            show_default=True,
            help="bf16: bfloat16 compute with float32 weights and optimizer state.",
        ),
        SET_OPTION,
        JSON_OPTION,
        click.option("--no-progress", is_flag=True, help="Hide the progress bar."),
    ]
    for option in reversed(options):
        f = option(f)
    return f

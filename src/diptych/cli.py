"""The ``diptych`` command line: the front door. Each command lives in :mod:`diptych.commands` (its options,
one call into the library, its printing); this module lists them, runs one, and turns every user error (a
:class:`~diptych.errors.DiptychError` or a click usage error) into one line on stderr and exit code 2,
without a traceback. A Ctrl-C ends with exit code 130, also one that lands after the command finished,
during the interpreter's teardown (:func:`run`).
"""

from __future__ import annotations

import signal
import sys

import click

from diptych.commands.bench import bench, report
from diptych.commands.compare import compare
from diptych.commands.convert import convert_cmd
from diptych.commands.cookbook import cookbook
from diptych.commands.data import data_group
from diptych.commands.evaluate import eval_cmd, list_tasks
from diptych.commands.export import export
from diptych.commands.generate import generate_cmd
from diptych.commands.images import augment_preview_cmd, predict_cmd
from diptych.commands.loso import loso_cmd
from diptych.commands.parity import parity
from diptych.commands.port import port
from diptych.commands.train import train
from diptych.commands.transcribe import transcribe_cmd
from diptych.errors import DiptychError
from diptych.launch import end_now, exit_process

# Every command (`diptych --help` lists them by name).
COMMANDS = [
    list_tasks,
    train,
    eval_cmd,
    compare,
    parity,
    bench,
    report,
    convert_cmd,
    export,
    generate_cmd,
    transcribe_cmd,
    loso_cmd,
    predict_cmd,
    augment_preview_cmd,
    data_group,
    port,
    cookbook,
]


@click.group(commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="diptych")
def cli():
    """diptych: every classic deep-learning task, in idiomatic PyTorch and idiomatic JAX."""


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning user errors into one line and exit code 2."""
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        rv = cli.main(args=argv, prog_name="diptych", standalone_mode=False, obj={"argv": argv})
        return rv if isinstance(rv, int) else 0
    except click.exceptions.NoSuchOption as e:
        valid = sorted(o for p in (e.ctx.command.params if e.ctx else []) for o in p.opts if o.startswith("--"))
        msg = f"no such option {e.option_name}" + (f"; valid options: {', '.join(valid)}" if valid else "")
    except click.exceptions.UsageError as e:
        msg = e.format_message()
    except DiptychError as e:
        msg = str(e)
    except click.exceptions.Exit as e:
        return e.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("diptych: interrupted", err=True)
        return 130
    click.echo(f"diptych: error: {' '.join(msg.split())}", err=True)
    return 2


def run() -> None:
    """The ``diptych`` program: :func:`main`, then an exit in which a late Ctrl-C prints no traceback."""
    try:
        code = main()
    except KeyboardInterrupt:  # between the command's end and main's return
        click.echo("diptych: interrupted", err=True)
        code = 130
    signal.signal(signal.SIGINT, _interrupted_at_exit)
    exit_process(code)  # sys.exit, or os._exit in a torch worker that left its process group (launch.py)


def _interrupted_at_exit(signum, frame) -> None:
    """A Ctrl-C after the command finished lands in the interpreter's teardown (JAX's gc callback runs
    there), where Python would print a KeyboardInterrupt traceback from wherever it struck: end at once
    with exit code 130, what was printed flushed. Everything the command wrote is already on disk."""
    end_now(130)


if __name__ == "__main__":
    run()

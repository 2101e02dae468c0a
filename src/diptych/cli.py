"""The ``diptych`` command line: a thin layer over the library (:mod:`diptych.driver`) and the
commands (:mod:`diptych.commands`). It parses arguments, calls one function and prints its result;
what a score means comes from the task's objective (:mod:`diptych.objectives`).

Every user error (a :class:`~diptych.errors.DiptychError` or a click usage error) ends as one
line on stderr and exit code 2, without a traceback.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import click

from diptych.backends import FRAMEWORKS
from diptych.commands.generate import LM_TASKS
from diptych.errors import DiptychError
from diptych.fsio import ensure_writable_dir
from diptych.tasks import OPTIMIZERS, SCHEDULES, TASKS

TASK = click.argument("task", type=click.Choice(list(TASKS)), metavar="TASK")
SEED = click.IntRange(0, 2**63 - 1)  # what numpy, torch and JAX all accept (JAX's key overflows above 2^63 - 1)


def _finite(ctx, param, value):
    """Ranges of click.FloatRange let NaN through (every comparison with NaN is false): refuse it."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number", ctx=ctx, param=param)
    return value


def _epochs(ctx, param, value):
    """A finite number of epochs; a whole one stays an int (3, not 3.0, in records and messages)."""
    value = _finite(ctx, param, value)
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


FRAMEWORKS_OPTION = click.option(
    "--frameworks",
    default=",".join(FRAMEWORKS),
    show_default=True,
    callback=_frameworks,
    help="Comma-separated twins to run.",
)


def _training_options(f):
    options = [
        click.option(
            "--epochs",
            type=click.FloatRange(0, 10**6, min_open=True),
            callback=_epochs,
            help="Epochs (default: the task's); a fraction such as 0.5 trains part of the last epoch.",
        ),
        click.option("--batch-size", type=click.IntRange(1, 2**31 - 1), help="Global batch (default: the task's)."),
        click.option("--lr", type=click.FloatRange(min=0, min_open=True), callback=_finite, help="Peak learning rate."),
        click.option("--optimizer", type=click.Choice(OPTIMIZERS), help="Optimizer (default: the task's)."),
        click.option("--schedule", type=click.Choice(SCHEDULES), help="Learning-rate schedule."),
        click.option(
            "--label-smoothing",
            type=click.FloatRange(0, 1, max_open=True),
            callback=_finite,
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
            type=click.Choice(["fp32", "bf16"]),
            default="fp32",
            show_default=True,
            help="bf16: bfloat16 compute with float32 weights and optimizer state.",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables."),
        click.option("--no-progress", is_flag=True, help="Hide the progress bar."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="diptych")
def cli():
    """diptych: every classic deep-learning task, in idiomatic PyTorch and idiomatic JAX."""


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_tasks(as_json):
    """Show the tasks: dataset, model, parameter count, target and reference result."""
    sized = [t.objective.sized(t) for t in TASKS.values()]  # a language model: the default corpus's vocabulary
    rows = [
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
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    from diptych.progress import table_console

    table = Table(title="diptych tasks")
    for col in ("task", "dataset", "model", "params", "target", "reference", "defaults"):
        table.add_column(col, justify="right" if col == "params" else "left")
    for r in rows:
        table.add_row(
            r["task"],
            r["dataset"],
            r["model"],
            f"{r['params']:,}",
            r["target"],
            r["reference"],
            f"{r['optimizer']} lr {r['lr']:g}, {r['epochs']} ep x {r['batch_size']}",
        )
    table_console().print(table)


@cli.command()
@TASK
@click.option("--framework", type=click.Choice(FRAMEWORKS), required=True, help="Which twin trains.")
@_training_options
@click.option("--out", type=click.Path(file_okay=False), help="Run folder (default runs/TASK/FRAMEWORK).")
@click.option("--resume", is_flag=True, help="Continue from the checkpoint in --out.")
@click.option("--init-from", type=click.Path(dir_okay=False), help="Start from these weights (either twin's).")
@click.option(
    "--checkpoint-every",
    type=int,
    help="Steps between checkpoints within an epoch (default: about every 90 s of training; 0: epoch ends only).",
)
@click.option(
    "--keep",
    type=int,
    default=1,
    show_default=True,
    help="Checkpoints kept: the newest (checkpoint.safetensors) and K-1 older ones (checkpoint-step<N>).",
)
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "gpu"]),
    default="auto",
    show_default=True,
    help="auto: a GPU when the framework sees one, else the CPU.",
)
@click.option(
    "--nproc",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Data-parallel workers on this machine (torch: torchrun + DDP; jax: jax.distributed).",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=29500,
    show_default=True,
    help="Coordinator port on 127.0.0.1 for --nproc > 1.",
)
@click.option(
    "--eval-every",
    type=click.IntRange(min=1),
    help="Also evaluate after every N steps, off the training clock (run.json: evals, train_clock_seconds).",
)
@click.option(
    "--profile-steps",
    metavar="A:B",
    help="Trace steps A to B (from 1) with the twin's profiler into OUT/profile/ and print the top operations.",
)
@click.option(
    "--tensorboard",
    type=click.Path(file_okay=False),
    help="Also write TensorBoard event files to DIR/TASK-FRAMEWORK (needs diptych[tensorboard]); "
    "metrics.jsonl in --out has the same points.",
)
@click.pass_context
def train(ctx, task, framework, out, as_json, no_progress, nproc, port, **kw):
    """Train TASK with one framework; writes run.json, weights.safetensors and a checkpoint."""
    from diptych.driver import RunConfig, train_and_evaluate
    from diptych.launch import launch_workers
    from diptych.stephooks import parse_steps

    kw["profile_steps"] = parse_steps(kw["profile_steps"])  # a bad range: one line, before any work

    out = ensure_writable_dir(out or f"runs/{task}/{framework}")  # before any training: one line if not
    if kw["tensorboard"]:  # a missing tensorboardX: one line now, not one per worker after loading the data
        from diptych.observe import tensorboard_writer_class

        tensorboard_writer_class()
        ensure_writable_dir(kw["tensorboard"], "--tensorboard")
    if nproc > 1 and launch_workers(
        framework, ctx.obj["argv"], nproc, port, out, kw["batch_size"] or TASKS[task].budget.batch_size
    ):
        return  # this was the launcher: the workers ran the command, and the lead printed the result
    record = train_and_evaluate(RunConfig(task, framework, progress=not no_progress, **kw), out)
    if record["world"]["rank"] != 0:  # another worker of a data-parallel run: the lead reports
        return
    if as_json:
        click.echo(json.dumps(record))
    else:
        click.echo(
            f"{task} [{framework}]: {TASKS[task].objective.score_line(record)}, "
            f"{record['samples_per_second']:,.0f} samples/s, wall {record['wall_seconds']:.1f}s -> {out}/run.json"
        )
        if record.get("profile"):
            from diptych.stephooks import format_top_ops

            prof = record["profile"]
            click.echo(
                f"steps {prof['steps'][0]}-{prof['steps'][1]}: {prof['step_ms']:.2f} ms per step; "
                f"trace in {prof['dir']}; top operations by self time:"
            )
            click.echo("\n".join(format_top_ops({framework: prof["top_ops"]})))


@cli.command()
@TASK
@_training_options
@FRAMEWORKS_OPTION
@click.option("--out", type=click.Path(file_okay=False), help="Folder (default runs/TASK/compare).")
def compare(task, frameworks, out, as_json, no_progress, **kw):
    """Train TASK in both twins on identical batches, one after the other; table + plot."""
    from diptych.commands.compare import compare_frameworks

    compare_frameworks(
        task,
        frameworks,
        ensure_writable_dir(out or f"runs/{task}/compare"),
        kw,
        as_json=as_json,
        progress=not no_progress,
    )


@cli.command("eval")
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


@cli.command()
@TASK
@click.argument("audio", nargs=-1, type=click.Path(), metavar="AUDIO.wav...")
@click.option(
    "--weights",
    type=click.Path(dir_okay=False),
    required=True,
    help="Weights from either twin (.safetensors from `diptych train` carry the feature statistics).",
)
@click.option(
    "--framework", type=click.Choice(FRAMEWORKS), default="torch", show_default=True, help="Which twin runs the model."
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    help="FSDD recordings, only for .pt/.msgpack weights (to recompute the feature statistics).",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print a JSON list instead of FILE<TAB>DIGIT<TAB>PROBABILITY lines."
)
def transcribe(task, audio, weights, framework, data_dir, as_json):
    """Name the spoken digit in each AUDIO.wav: one line per file, FILE<TAB>DIGIT<TAB>PROBABILITY."""
    from diptych.commands.transcribe import transcribe as run

    results = run(task, framework, weights, list(audio), data_dir)
    if as_json:
        click.echo(json.dumps(results))
    for r in [] if as_json else results:
        click.echo(f"{r['file']}\t{r['digit']}\t{r['probability']:.4f}")


@cli.command()
@TASK
@click.option("--steps", type=click.IntRange(1, 10**6), default=100, show_default=True, help="Training steps (d).")
@click.option("--optimizer", type=click.Choice(["sgd", "adam"]), default="adam", show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True, callback=_finite)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False), help="Folder with the dataset files.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def parity(task, steps, optimizer, lr, seed, data_dir, as_json):
    """Prove the twins agree on TASK: logits, gradients, one step, N steps. Exit 1 if not."""
    from diptych.parity import print_report, run_parity

    report = run_parity(task, steps=steps, optimizer=optimizer, lr=lr, seed=seed, data_dir=data_dir)
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


@cli.command("convert")
@click.argument("src", type=click.Path(dir_okay=False))
@click.argument("dst", type=click.Path(dir_okay=False))
@click.option("--task", type=click.Choice(list(TASKS)), help="Record this task in the output's metadata.")
def convert_cmd(src, dst, task):
    """Convert weights: SRC/DST are .safetensors (canonical), .pt (torch) or .msgpack (Flax NNX)."""
    from diptych.commands.convert import convert

    info = convert(src, dst, task)
    click.echo(f"{info['source']} -> {info['output']} ({info['format']}, {info['model']}, {info['tensors']} tensors)")


@cli.command()
@TASK
@FRAMEWORKS_OPTION
@click.option("--repeats", type=click.IntRange(1, 1000), default=3, show_default=True, help="Interleaved rounds.")
@click.option(
    "--burst",
    "seconds",
    type=click.FloatRange(0.1, 3600),
    default=3.0,
    show_default=True,
    callback=_finite,
    help="Seconds of steady-state training per burst.",
)
@click.option("--baseline", is_flag=True, help="Add the seed-faithful PyTorch recipe (mnist-cnn only).")
@click.option("--no-train", is_flag=True, help="Bursts only: skip the time-to-target runs.")
@click.option(
    "--precision",
    default="fp32",
    show_default=True,
    callback=lambda ctx, param, value: _precisions(value),
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
@click.option(
    "--limit", type=click.IntRange(min=1), hidden=True, help="Quick checks: the first N samples of each split."
)
@click.option("--epochs", type=click.IntRange(min=1), hidden=True, help="Quick checks: every contestant's epochs.")
def bench(
    task,
    frameworks,
    repeats,
    seconds,
    baseline,
    no_train,
    precision,
    data_dir,
    out,
    augment,
    device,
    eval_every,
    profile,
    limit,
    epochs,
):
    """Benchmark the twins side by side (interleaved); writes report.html and report.md."""
    from diptych.commands.bench import run_bench
    from diptych.progress import console

    out = ensure_writable_dir(out or f"runs/{task}/bench")
    result = run_bench(
        task,
        frameworks,
        out,
        repeats=repeats,
        seconds=seconds,
        baseline=baseline,
        data_dir=data_dir,
        train=not no_train,
        log=lambda line: console.print(f"[dim]{line}[/]"),
        precision=precision,
        augment=augment,
        device=device,
        eval_every=eval_every,
        profile=profile,
        limit=limit,
        epochs=epochs,
    )
    _print_bench(result)
    click.echo(f"report: {out / 'report.html'} and {out / 'report.md'}")


@cli.command()
@click.argument("task", type=click.Choice(LM_TASKS), metavar="TASK")
@click.option("--weights", type=click.Path(dir_okay=False), required=True, help="weights.safetensors of either twin.")
@click.option("--framework", type=click.Choice(FRAMEWORKS), default="torch", show_default=True, help="Which twin runs.")
@click.option("--prompt", default="The ", show_default=True, help="Text to start from (characters the model knows).")
@click.option("--length", type=click.IntRange(0, 10**6), default=200, show_default=True, help="Characters to add.")
@click.option(
    "--temperature",
    type=click.FloatRange(min=0),
    default=0.8,
    show_default=True,
    callback=_finite,
    help="0 = greedy; higher = more varied.",
)
@click.option("--seed", type=SEED, default=0, show_default=True, help="Sampling seed (the same in both twins).")
def generate(task, weights, framework, prompt, length, temperature, seed):
    """Sample text from a trained character language model (weights from either twin)."""
    from diptych.commands.generate import generate as run_generate

    click.echo(run_generate(weights, framework, prompt, length, temperature, seed, task=task))


@cli.command()
@click.argument("dirs", nargs=-1, required=True, type=click.Path())
@click.option("--out", type=click.Path(file_okay=False), default="runs/report", show_default=True)
def report(dirs, out):
    """Rebuild report.html/report.md from saved bench.json or run.json files under DIRS."""
    from diptych.commands.report import rebuild

    result = rebuild(list(dirs), out)
    _print_bench(result)
    click.echo(f"report: {Path(out) / 'report.html'} and {Path(out) / 'report.md'}")


def _precisions(value: str) -> list[str]:
    names = [p.strip() for p in value.split(",") if p.strip()]
    bad = [p for p in names if p not in ("fp32", "bf16")]
    if bad or not names:
        raise DiptychError(f"unknown precision {bad[0] if bad else value!r} in --precision; choose fp32, bf16 or both")
    return list(dict.fromkeys(names))


def _print_bench(result: dict) -> None:
    from rich.table import Table

    from diptych.commands.report import headline, profile_tables, table_rows
    from diptych.progress import table_console
    from diptych.stephooks import format_top_ops

    headers, rows = table_rows(result)
    table = Table(title=f"diptych bench {result['task']}")
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


# Command groups defined in their own modules (imported here, after `cli` exists).
from diptych.commands.cookbook import cookbook  # noqa: E402
from diptych.commands.port import register as register_port  # noqa: E402

cli.add_command(cookbook)
register_port(cli)  # `diptych port check|convert|export` and `diptych export`


def _one_line(message: str) -> str:
    return " ".join(message.split())


from diptych.commands.images import augment_preview_cmd, predict_cmd  # noqa: E402  (no torch/jax at import)

cli.add_command(predict_cmd)
cli.add_command(augment_preview_cmd)
cli.add_command(__import__("diptych.commands.data", fromlist=["data_group"]).data_group)  # `diptych data pack|verify`


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
    click.echo(f"diptych: error: {_one_line(msg)}", err=True)
    return 2


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()

"""``diptych train``: one twin trains one task (:func:`diptych.driver.train_and_evaluate`), in this process or,
with ``--nproc N``, in N data-parallel worker processes that this one launches and watches
(:mod:`diptych.launch`)."""

from __future__ import annotations

import json

import click

from diptych.backends import FRAMEWORKS, load_backend
from diptych.commands.options import TASK, training_options
from diptych.errors import DiptychError
from diptych.fsio import ensure_writable_dir
from diptych.launch import SHARDS
from diptych.tasks import TASKS


@click.command()
@TASK
@click.option("--framework", type=click.Choice(FRAMEWORKS), required=True, help="Which twin trains.")
@training_options
@click.option("--out", type=click.Path(file_okay=False), help="Run folder (default runs/TASK/FRAMEWORK).")
@click.option("--resume", is_flag=True, help="Continue from the checkpoint in --out (a finished run: nothing to do).")
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
    "--shard",
    type=click.Choice(SHARDS),
    default="none",
    show_default=True,
    help="fsdp: shard parameters and optimizer state over the workers' devices (torch FSDP2; jax: a mesh "
    "with an fsdp axis); none: replicate them (data parallelism).",
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
    from diptych.stephooks import parse_steps

    kw["profile_steps"] = parse_steps(kw["profile_steps"])  # a bad range: one line, before any work
    out = ensure_writable_dir(out or f"runs/{task}/{framework}")  # before any training: one line if not
    if kw["tensorboard"]:  # a missing tensorboardX: one line now, not one per worker after loading the data
        from diptych.observe import tensorboard_writer_class

        tensorboard_writer_class()
        ensure_writable_dir(kw["tensorboard"], "--tensorboard")
    argv = ctx.find_root().obj["argv"]
    if nproc > 1 and launch_workers(
        framework, argv, nproc, port, out, kw["batch_size"] or TASKS[task].budget.batch_size
    ):
        return  # this was the launcher: the workers ran the command, and the lead printed the result
    record = train_and_evaluate(RunConfig(task, framework, progress=not no_progress, **kw), out)
    if record["world"]["rank"] == 0:  # in a data-parallel run, the lead reports
        print_record(record, out, as_json)


def print_record(record: dict, out, as_json: bool) -> None:
    """The run's one-line summary (or its JSON record), and the top operations of a profiled range."""
    task, framework = record["task"], record["framework"]
    if as_json:
        click.echo(json.dumps(record))
        return
    done = f"already complete after {record['epochs'][-1]['epoch']} epochs: " if record.get("already_complete") else ""
    click.echo(
        f"{task} [{framework}]: {done}{TASKS[task].objective.score_line(record)}, "
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


def launch_workers(framework: str, argv: list[str], nproc: int, port: int, out, batch_size: int) -> bool:
    """``--nproc N`` in the launching process: re-run this very command (``argv``) in ``nproc`` local workers
    with the twin's own engine, and return True; inside a worker (ours or a user's ``torchrun``) return
    False, so the command trains."""
    dist = load_backend(framework).distributed
    if dist.is_worker():
        return False
    if batch_size % nproc:  # say it once here, not once per worker
        raise DiptychError(
            f"--batch-size {batch_size} is not divisible by --nproc {nproc}: each worker takes an "
            f"equal shard of the global batch; pick a multiple of {nproc}"
        )
    dist.launch(argv, nproc, port, str(out))
    return True

"""``diptych convert``: move weights between the canonical file and each framework's native one.

Formats are chosen by the file name (:mod:`diptych.formats`: ``.safetensors`` canonical, ``.pt``
torch, ``.msgpack`` Flax NNX). The model is the one a ``.safetensors`` file's metadata describes, or is
recognised from the tensors' names and shapes, so no task needs to be named (pass ``--task`` to record one
in the output's metadata, and ``--task`` with ``--set`` for a native file of a model trained with ``--set``).
"""

from __future__ import annotations

from pathlib import Path

import click

from diptych.backends import load_backend
from diptych.commands.options import SET_OPTION
from diptych.errors import DiptychError
from diptych.formats import file_format, read_any
from diptych.inference import InferenceMeta
from diptych.overrides import data_misfit, parse_sets, spec_to_dict
from diptych.tasks import TASKS, get_task
from diptych.weights import save_weights


def convert(src: str | Path, dst: str | Path, task: str | None = None, sets: tuple[str, ...] = ()) -> dict:
    like = None
    if sets:  # the model of a file without one (.pt, .msgpack): the task's, with these overrides
        if task is None:
            raise DiptychError("--set describes a task's model: pass --task TASK too")
        like = get_task(task).with_model_overrides(parse_sets(sets)).model
    params, spec, meta = read_any(src, like)
    dst = Path(dst)
    fmt = file_format(dst)
    if like is not None and spec != like.sized_like(params):
        raise DiptychError(f"{src} holds a {spec.describe()}, not the {like.describe()} that --set describes")
    if task is not None and (misfit := data_misfit(get_task(task).model.sized_like(params), spec)):
        raise DiptychError(f"{src} holds a {spec.describe()}, not a model of task {task!r} ({misfit})")
    dst.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "canonical":
        # what prediction needs (the model as trained, a language model's vocabulary, the audio front end)
        keep = InferenceMeta.read(src, meta).to_metadata() | {"model": spec_to_dict(spec)}
        keep["task"] = task or keep.get("task")
        save_weights(params, dst, source=str(src), **keep)
    elif fmt == "torch":
        load_backend("torch").weights.save_native(params, dst)
    else:
        load_backend("jax").weights.save_native(params, dst, spec)
    return {"source": str(src), "output": str(dst), "format": fmt, "model": spec.describe(), "tensors": len(params)}


@click.command("convert")
@click.argument("src", type=click.Path(dir_okay=False))
@click.argument("dst", type=click.Path(dir_okay=False))
@click.option("--task", type=click.Choice(list(TASKS)), help="Record this task in the output's metadata.")
@SET_OPTION
def convert_cmd(src, dst, task, sets):
    """Convert weights: SRC/DST are .safetensors (canonical), .pt (torch) or .msgpack (Flax NNX).

    A .safetensors file from `diptych train` carries its model; a .pt or .msgpack file of a model trained
    with --set needs --task and the same --set."""
    info = convert(src, dst, task, sets)
    click.echo(f"{info['source']} -> {info['output']} ({info['format']}, {info['model']}, {info['tensors']} tensors)")

"""``diptych convert``: move weights between the canonical file and each framework's native one.

Formats are chosen by the file name (:mod:`diptych.formats`: ``.safetensors`` canonical, ``.pt``
torch, ``.msgpack`` Flax NNX). The model is recognised from the tensors' names and shapes, so no task
needs to be named (pass ``--task`` to record one in the output's metadata).
"""

from __future__ import annotations

from pathlib import Path

import click

from diptych.backends import load_backend
from diptych.errors import DiptychError
from diptych.formats import file_format, read_any
from diptych.inference import InferenceMeta
from diptych.tasks import TASKS, get_task
from diptych.weights import save_weights


def convert(src: str | Path, dst: str | Path, task: str | None = None) -> dict:
    params, spec, meta = read_any(src)
    dst = Path(dst)
    fmt = file_format(dst)
    if task is not None and get_task(task).model.sized_like(params) != spec:
        raise DiptychError(f"{src} holds a {spec.describe()}, not the model of task {task!r}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "canonical":
        # what prediction needs (a language model's vocabulary, the audio front end) travels along
        keep = InferenceMeta.read(src, meta).to_metadata()
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
def convert_cmd(src, dst, task):
    """Convert weights: SRC/DST are .safetensors (canonical), .pt (torch) or .msgpack (Flax NNX)."""
    info = convert(src, dst, task)
    click.echo(f"{info['source']} -> {info['output']} ({info['format']}, {info['model']}, {info['tensors']} tensors)")

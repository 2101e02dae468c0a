"""``diptych predict``: your images in, class names out, with weights from either twin.

``diptych train image-cnn --data-dir PATH`` stores what prediction needs in ``weights.safetensors``:
the class names (``classes``) and the image settings and training statistics (``features``: size,
channels, mean, std), so an image is converted exactly as the training images were.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click
import numpy as np

from diptych.errors import DiptychError
from diptych.tasks import TASKS, get_task

IMAGE_TASKS = [name for name, t in TASKS.items() if t.dataset == "folder"]


def predict(task_name: str, framework: str, weights_path: str, images: list[str]) -> list[dict]:
    """``[{"file", "class", "probability"}]`` for each image, in order."""
    from diptych.backends import load_backend
    from diptych.data.images import decode
    from diptych.formats import read_any
    from diptych.inference import InferenceMeta
    from diptych.language import log_softmax
    from diptych.weights import check_weights

    task = get_task(task_name)
    if task.dataset != "folder":
        raise DiptychError(f"{task_name} does not train on your images; predict takes {', '.join(IMAGE_TASKS)}")
    if not images:
        raise DiptychError("no images given; pass one or more image files after the options")
    params, _, meta = read_any(weights_path)  # canonical, torch .pt or Flax .msgpack
    info = InferenceMeta.read(weights_path, meta)
    if info.features is None or info.classes is None:
        raise DiptychError(f"{weights_path} carries no class names or image settings; pass the "
                           f"weights.safetensors that `diptych train {task_name}` wrote")
    fe, classes = info.features["frontend"], info.classes
    model = dataclasses.replace(task.model, in_size=fe["size"], in_channels=fe["channels"], num_classes=len(classes))
    check_weights(params, model.param_shapes(), str(weights_path))
    x = np.stack([decode(Path(p), fe["size"], fe["channels"]) for p in images])  # (N, [C,] H, W) in [0, 1]
    x = ((x - info.features["mean"]) / info.features["std"]).astype(np.float32)
    trainer = load_backend(framework).train.Trainer(dataclasses.replace(task, model=model), 0, 1)
    trainer.load_weights(params, str(weights_path))
    probs = np.exp(log_softmax(trainer.predict(x).astype(np.float64)))  # (N, classes)
    return [{"file": str(p), "class": classes[int(pr.argmax())], "probability": float(pr.max())}
            for p, pr in zip(images, probs)]


@click.command("predict")
@click.argument("task", type=click.Choice(IMAGE_TASKS), metavar="TASK")
@click.argument("images", nargs=-1, type=click.Path(), metavar="IMAGE...")
@click.option("--weights", type=click.Path(dir_okay=False), required=True,
              help="weights.safetensors from `diptych train TASK --data-dir ...` (either twin).")
@click.option("--framework", type=click.Choice(["torch", "jax"]), default="torch", show_default=True,
              help="Which twin runs the model.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of FILE<TAB>CLASS<TAB>PROBABILITY.")
def predict_cmd(task, images, weights, framework, as_json):
    """Name the class of each IMAGE: one line per file, FILE<TAB>CLASS<TAB>PROBABILITY."""
    results = predict(task, framework, weights, list(images))
    if as_json:
        click.echo(json.dumps(results))
    for r in [] if as_json else results:
        click.echo(f"{r['file']}\t{r['class']}\t{r['probability']:.4f}")

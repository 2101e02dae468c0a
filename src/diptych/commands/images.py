"""``diptych predict``: your images in, class names out, with weights from either twin.

``diptych train image-cnn --data-dir PATH`` stores what prediction needs in ``weights.safetensors``:
the class names (``classes``) and the image settings and training statistics (``features``: size,
channels, mean, std), so an image is converted exactly as the training images were.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from diptych.commands.options import twin_option
from diptych.errors import DiptychError
from diptych.fsio import write_figure
from diptych.tasks import TASKS, get_task

IMAGE_TASKS = [name for name, t in TASKS.items() if t.dataset == "folder"]


def predict(task_name: str, framework: str, weights_path: str, images: list[str]) -> list[dict]:
    """``[{"file", "class", "probability"}]`` for each image, in order."""
    from diptych.backends import load_backend
    from diptych.data.images import decode
    from diptych.formats import read_any
    from diptych.inference import InferenceMeta
    from diptych.objectives import class_probabilities
    from diptych.weights import check_weights

    task = get_task(task_name)
    if task.dataset != "folder":
        raise DiptychError(f"{task_name} does not train on your images; predict takes {', '.join(IMAGE_TASKS)}")
    if not images:
        raise DiptychError("no images given; pass one or more image files after the options")
    params, _, meta = read_any(weights_path)  # canonical, torch .pt or Flax .msgpack
    info = InferenceMeta.read(weights_path, meta)
    if info.features is None or info.classes is None:
        raise DiptychError(
            f"{weights_path} carries no class names or image settings; pass the "
            f"weights.safetensors that `diptych train {task_name}` wrote"
        )
    fe, classes = info.features["frontend"], info.classes
    task = task.objective.for_weights(task, info)  # the size, channels and classes it was trained with
    task = info.fit_task(task, weights_path)  # and its sizes (--set overrides included)
    check_weights(params, task.model.param_shapes(), str(weights_path))
    x = np.stack([decode(Path(p), fe["size"], fe["channels"]) for p in images])  # (N, [C,] H, W) in [0, 1]
    x = ((x - info.features["mean"]) / info.features["std"]).astype(np.float32)
    trainer = load_backend(framework).train.Trainer(task, 0, 1)
    trainer.load_weights(params, str(weights_path))
    probs = class_probabilities(trainer, x)  # (N, classes)
    return [
        {"file": str(p), "class": classes[int(pr.argmax())], "probability": float(pr.max())}
        for p, pr in zip(images, probs)
    ]


@click.command("predict")
@click.argument("task", type=click.Choice(IMAGE_TASKS), metavar="TASK")
@click.argument("images", nargs=-1, type=click.Path(), metavar="IMAGE...")
@click.option(
    "--weights",
    type=click.Path(dir_okay=False),
    required=True,
    help="weights.safetensors from `diptych train TASK --data-dir ...` (either twin).",
)
@twin_option("Which twin runs the model.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of FILE<TAB>CLASS<TAB>PROBABILITY.")
def predict_cmd(task, images, weights, framework, as_json):
    """Name the class of each IMAGE: one line per file, FILE<TAB>CLASS<TAB>PROBABILITY."""
    results = predict(task, framework, weights, list(images))
    if as_json:
        click.echo(json.dumps(results))
    for r in [] if as_json else results:
        click.echo(f"{r['file']}\t{r['class']}\t{r['probability']:.4f}")


def augment_preview(
    task_name: str,
    out: str | Path,
    augment: str | None = None,
    framework: str = "torch",
    data_dir: str | None = None,
    columns: int = 8,
    rows: int = 3,
    seed: int = 0,
) -> Path:
    """A PNG grid: the first ``columns`` training images on top, then ``rows`` augmented draws of them
    (steps 0, 1, ...) as ``framework`` applies them in training."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from diptych.backends import load_backend
    from diptych.data.augment import augmenter_for
    from diptych.tasks import choose_augment

    task = choose_augment(get_task(task_name), augment)
    if getattr(task.augment, "modality", None) != "image" or not task.augment.active():
        raise DiptychError(
            f"{task_name} has no image augmentation to show; pass --augment OPS, e.g. "
            f"--augment shift:2,rotate:10,erase:0.25"
        )
    task, data, _ = task.objective.load(task, data_dir)
    x = data.x_train[:columns]  # (N, [C,] H, W)
    draw = augmenter_for(task, data, seed)
    aug = load_backend(framework).augment
    batches = [x] + [_apply(aug, framework, x, draw(x, 0, step)) for step in range(rows)]
    fig, axes = plt.subplots(rows + 1, len(x), figsize=(1.2 * len(x), 1.2 * (rows + 1)), squeeze=False)
    for r, batch in enumerate(batches):
        for c, img in enumerate(batch):
            ax = axes[r][c]
            shown = (
                img
                if img.ndim == 2
                else np.clip(img.transpose(1, 2, 0) * data.features["std"] + data.features["mean"], 0, 1)
            )  # (H, W, 3) in [0, 1]
            ax.imshow(shown, cmap="gray" if img.ndim == 2 else None)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r][0].set_ylabel("original" if r == 0 else f"step {r - 1}", fontsize=8)
    fig.suptitle(f"{task.name}: --augment {task.augment.describe()} ({framework})", fontsize=9)
    fig.tight_layout()
    out = write_figure(fig, out, dpi=100)
    plt.close(fig)
    return out


def _apply(aug, framework: str, x: np.ndarray, params: dict) -> np.ndarray:
    """The twin's on-device augmentation of ``x``, back as numpy."""
    if framework == "torch":
        import torch

        return aug.apply(torch.from_numpy(x), {k: torch.from_numpy(v) for k, v in params.items()}).numpy()
    import jax.numpy as jnp

    return np.asarray(aug.apply(jnp.asarray(x), {k: jnp.asarray(v) for k, v in params.items()}))


@click.command("augment-preview")
@click.argument(
    "task",
    type=click.Choice([n for n, t in TASKS.items() if t.dataset in ("mnist", "fashion-mnist", "folder")]),
    metavar="TASK",
)
@click.option(
    "--out", type=click.Path(dir_okay=False), default="augment.png", show_default=True, help="The PNG to write."
)
@click.option("--augment", help="default (the task's) or OPS, e.g. shift:2,rotate:10,erase:0.25.")
@twin_option("Which twin applies the augmentation.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Folder with the dataset (or your images).")
@click.option("--seed", type=int, default=0, show_default=True, help="The run seed the draws come from.")
def augment_preview_cmd(task, out, augment, framework, data_dir, seed):
    """Write a grid of training images and their augmented versions, as a twin applies them in training."""
    click.echo(str(augment_preview(task, out, augment, framework, data_dir, seed=seed)))

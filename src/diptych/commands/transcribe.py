"""``diptych transcribe``: wav files in, spoken digits out, with weights from either twin.

The weights file carries what the model was trained on: ``diptych train`` stores the front-end
settings and the training split's per-band statistics in the ``.safetensors`` metadata
(``features``), so a recording is turned into exactly the normalized log-mel image the model saw.
Native ``.pt`` / ``.msgpack`` files have no metadata; for them the statistics are recomputed from the
official split of the recordings found as for training (``--data-dir``, ``$DIPTYCH_DATA``, cache).
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from diptych.backends import load_backend
from diptych.commands.options import TASK, twin_option
from diptych.data.audio import check_features, normalize, wav_features
from diptych.data.datasets import AUDIO_DATASETS
from diptych.data.fsdd import load_fsdd
from diptych.errors import DiptychError
from diptych.formats import read_any
from diptych.inference import InferenceMeta
from diptych.language import log_softmax
from diptych.tasks import TASKS, get_task
from diptych.weights import check_weights


def _features(meta: InferenceMeta, weights_path: str, data_dir: str | None) -> dict:
    if meta.features is not None:
        return meta.features
    try:
        return load_fsdd(data_dir, "official", download=False).features
    except DiptychError as e:
        raise DiptychError(
            f"{weights_path} carries no feature statistics (only the weights.safetensors "
            f"that `diptych train` writes do) and recomputing them failed: {e}"
        ) from None


def transcribe(
    task_name: str, framework: str, weights_path: str, audio: list[str], data_dir: str | None = None
) -> list[dict]:
    """``[{"file", "digit", "probability"}]`` for each wav file, in order."""
    task = get_task(task_name)
    if task.dataset not in AUDIO_DATASETS:
        audio_tasks = ", ".join(n for n, t in TASKS.items() if t.dataset in AUDIO_DATASETS)
        raise DiptychError(f"{task_name} is not a speech task; transcribe takes one of {audio_tasks}")
    if not audio:
        raise DiptychError("no audio files given; pass one or more .wav files after the options")
    params, _, meta = read_any(weights_path)  # canonical, torch .pt or Flax .msgpack
    info = InferenceMeta.read(weights_path, meta)
    task = info.fit_task(task, weights_path)  # the model as trained (--set overrides included)
    check_weights(params, task.model.param_shapes(), str(weights_path))
    features = _features(info, weights_path, data_dir)
    features = check_features(features, str(weights_path), task.model.input_shape())
    fe = features["frontend"]  # a FrontEnd, checked: types, ranges, the model's image size
    stats = {k: features[k] for k in ("mean", "std")}
    x = normalize(np.stack([wav_features(p, fe) for p in audio]), stats)  # (N, M, T)
    trainer = load_backend(framework).train.Trainer(task, 0, 1)
    trainer.load_weights(params, str(weights_path))
    probs = np.exp(log_softmax(trainer.predict(x).astype(np.float64)))  # (N, classes)
    return [
        {"file": str(Path(p)), "digit": int(pr.argmax()), "probability": float(pr.max())} for p, pr in zip(audio, probs)
    ]


@click.command("transcribe")
@TASK
@click.argument("audio", nargs=-1, type=click.Path(), metavar="AUDIO.wav...")
@click.option(
    "--weights",
    type=click.Path(dir_okay=False),
    required=True,
    help="Weights from either twin (.safetensors from `diptych train` carry the feature statistics).",
)
@twin_option("Which twin runs the model.")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    help="FSDD recordings, only for .pt/.msgpack weights (to recompute the feature statistics).",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print a JSON list instead of FILE<TAB>DIGIT<TAB>PROBABILITY lines."
)
def transcribe_cmd(task, audio, weights, framework, data_dir, as_json):
    """Name the spoken digit in each AUDIO.wav: one line per file, FILE<TAB>DIGIT<TAB>PROBABILITY."""
    results = transcribe(task, framework, weights, list(audio), data_dir)
    if as_json:
        click.echo(json.dumps(results))
    for r in [] if as_json else results:
        click.echo(f"{r['file']}\t{r['digit']}\t{r['probability']:.4f}")

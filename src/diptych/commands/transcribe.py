"""``diptych transcribe``: wav files in, spoken digits out, with weights from either twin.

The weights file carries what the model was trained on: ``diptych train`` stores the front-end
settings and the training split's per-band statistics in the ``.safetensors`` metadata
(``features``), so a recording is turned into exactly the normalized log-mel image the model saw.
Native ``.pt`` / ``.msgpack`` files have no metadata; for them the statistics are recomputed from the
official split of the recordings found as for training (``--data-dir``, ``$DIPTYCH_DATA``, cache).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diptych.backends import load_backend
from diptych.data.audio import FrontEnd, normalize, wav_features
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
    check_weights(params, task.model.param_shapes(), str(weights_path))
    features = _features(InferenceMeta.read(weights_path, meta), weights_path, data_dir)
    fe = FrontEnd(**features["frontend"])
    stats = {k: np.asarray(features[k], np.float32) for k in ("mean", "std")}
    x = normalize(np.stack([wav_features(p, fe) for p in audio]), stats)  # (N, M, T)
    trainer = load_backend(framework).train.Trainer(task, 0, 1)
    trainer.load_weights(params, str(weights_path))
    probs = np.exp(log_softmax(trainer.predict(x).astype(np.float64)))  # (N, classes)
    return [
        {"file": str(Path(p)), "digit": int(pr.argmax()), "probability": float(pr.max())} for p, pr in zip(audio, probs)
    ]

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
from diptych.data.audio import normalize, read_wav, shift_voices, waveform_features
from diptych.data.audio_checks import check_features
from diptych.data.datasets import AUDIO_DATASETS
from diptych.data.fsdd import load_fsdd
from diptych.data.vad import speech_spans
from diptych.errors import DiptychError
from diptych.formats import read_any
from diptych.inference import InferenceMeta
from diptych.objectives import class_probabilities
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


def _row(probs: np.ndarray, top: int) -> dict:
    """One prediction: the likeliest digit, its probability and the ``top`` likeliest as ``[digit, p]``."""
    order = np.argsort(-probs, kind="stable")[:top]
    return {
        "digit": int(order[0]),
        "probability": float(probs[order[0]]),
        "top": [[int(d), float(probs[d])] for d in order],
    }


def transcribe(
    task_name: str,
    framework: str,
    weights_path: str,
    audio: list[str],
    data_dir: str | None = None,
    *,
    sequence: bool = False,
    top: int = 1,
) -> list[dict]:
    """One dict per wav file, in order: ``{"file", "speech", "digit", "probability", "top"}``, and with
    ``sequence`` also ``"digits"`` (``"417"``) and ``"segments"`` (``{"start", "end"}`` in seconds, plus
    each one's digit, probability and top). ``speech`` is False (and the digit None) for a recording with
    no speech in it. Any sample rate is resampled and channels are mixed down (:func:`read_wav`); leading
    and trailing silence is trimmed, and with ``sequence`` the speech is split at its pauses
    (:mod:`diptych.data.vad`), each part read as one digit. A front end with ``voice`` set takes the files of one
    call as one voice (:func:`~diptych.data.audio.shift_voices`: at least ``MIN_VOICE`` digits, or none is moved)."""
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
    if not 1 <= top <= task.model.num_classes:
        raise DiptychError(f"--top {top}: choose 1 to {task.model.num_classes} (the digits the model knows)")
    features = _features(info, weights_path, data_dir)
    features = check_features(features, str(weights_path), task.model.input_shape())
    fe = features["frontend"]  # a FrontEnd, checked: types, ranges, the model's image size
    stats = {k: features[k] for k in ("mean", "std")}
    pieces, owner = [], []  # waveforms to read as one digit each, and the file each came from
    spans: list[list[tuple[int, int]]] = []
    for i, path in enumerate(audio):
        x = read_wav(path, fe.sample_rate)  # (n,) mono at the model's rate
        found = speech_spans(x, fe.sample_rate)
        found = found if sequence or not found else [(found[0][0], found[-1][1])]  # one digit: trim only
        spans.append(found)
        # A front end that trims (fe.trim) cuts one digit's silence itself, as it did for the training recordings.
        pieces += [x] if found and not sequence and fe.trim else [x[a:b] for a, b in found]
        owner += [i] * len(found)
    probs = np.zeros((0, task.model.num_classes))
    if pieces:
        logmel = np.stack([waveform_features(p, fe) for p in pieces])  # (N, M, T)
        if fe.voice:  # the recordings of one call are one voice; under MIN_VOICE of them it is left as it is
            logmel = shift_voices(logmel, np.zeros(len(logmel), int), features["voice_mean"])
        trainer = load_backend(framework).train.Trainer(task, 0, 1)
        trainer.load_weights(params, str(weights_path))
        probs = class_probabilities(trainer, normalize(logmel, stats), fe.views)  # (N, classes)
    results = []
    for i, path in enumerate(audio):
        mine = [pr for pr, o in zip(probs, owner) if o == i]
        row = {"file": str(Path(path)), "speech": bool(mine)}
        row |= _row(mine[0], top) if mine else {"digit": None, "probability": None, "top": []}
        if sequence:
            segments = [
                {"start": a / fe.sample_rate, "end": b / fe.sample_rate} | _row(pr, top)
                for (a, b), pr in zip(spans[i], mine)
            ]
            row |= {"digits": "".join(str(s["digit"]) for s in segments), "segments": segments}
        results.append(row)
    return results


def _lines(row: dict, sequence: bool, top: int) -> list[str]:
    """FILE<TAB>DIGIT<TAB>PROBABILITY (then the next likeliest pairs with --top); with --sequence
    FILE<TAB>DIGITS<TAB>one probability per digit, and with --top one indented line per digit."""
    if not row["speech"]:
        return [f"{row['file']}\t-\tno speech"]
    if not sequence:
        return [row["file"] + "".join(f"\t{d}\t{p:.4f}" for d, p in row["top"])]
    probs = " ".join(f"{s['probability']:.4f}" for s in row["segments"])
    lines = [f"{row['file']}\t{row['digits']}\t{probs}"]
    for s in row["segments"] if top > 1 else []:
        alternatives = "  ".join(f"{d} ({p:.4f})" for d, p in s["top"])
        lines.append(f"\t{s['start']:.2f}-{s['end']:.2f} s\t{alternatives}")
    return lines


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
    "--sequence", is_flag=True, help="Several digits per file, spoken with pauses: split at the pauses, e.g. 417."
)
@click.option("--top", type=click.IntRange(min=1), default=1, show_default=True, help="Show the K likeliest digits.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print a JSON list instead of FILE<TAB>DIGIT<TAB>PROBABILITY lines."
)
def transcribe_cmd(task, audio, weights, framework, data_dir, sequence, top, as_json):
    """Name the spoken digit in each AUDIO.wav: one line per file, FILE<TAB>DIGIT<TAB>PROBABILITY
    (FILE<TAB>-<TAB>no speech for a recording without speech). Leading and trailing silence is trimmed;
    any sample rate and channel count are taken."""
    results = transcribe(task, framework, weights, list(audio), data_dir, sequence=sequence, top=top)
    if as_json:
        click.echo(json.dumps(results))
    for r in [] if as_json else results:
        click.echo("\n".join(_lines(r, sequence, top)))

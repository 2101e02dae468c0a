"""Leave one speaker out: how a speech task does on a voice it has never heard.

FSDD's official split tests on takes 0-4 of the same six speakers the model trained on, so it measures
how well a model knows those voices. A user's own voice is a new one. The protocol here trains once per
speaker on the other five (``--split speaker:NAME``) and tests on the speaker left out: six trainings
per twin, one accuracy per speaker, and their mean and minimum.

When both twins run, each fold's weights are also scored by the other twin, and the share of held-out
recordings on which the two name the same digit is recorded (``agreement``).

Example (six trainings per twin: minutes on 2 cores)::

    diptych loso fsdd-cnn --frameworks torch,jax --out runs/loso
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diptych.data.fsdd import locate_recordings, parse_name
from diptych.driver import RunConfig, evaluate_weights, train_and_evaluate
from diptych.errors import DiptychError
from diptych.fsio import write_figure
from diptych.records import write_json
from diptych.tasks import TASKS, get_task


def speakers(data_dir: str | None = None) -> list[str]:
    """The speakers of the FSDD recordings found as for training, sorted."""
    return sorted({parse_name(p.name)[1] for p in locate_recordings(data_dir, download=True)})


def leave_one_speaker_out(
    task_name: str,
    frameworks: list[str],
    workdir: str | Path,
    data_dir: str | None = None,
    epochs: float | None = None,
    batch_size: int | None = None,
    only: list[str] | None = None,
    progress: bool = True,
    seeds: int = 1,
) -> dict:
    """Train ``task_name`` once per held-out speaker in each twin; the record (also ``workdir/loso.json``):
    ``{"accuracy": {speaker: {framework: acc}}, "mean": {framework: m}, "min": ..., "agreement": ...}``.
    ``only`` restricts the folds to those speakers (a quick look; the mean is then over them).

    ``seeds`` > 1 trains each fold with seeds ``0 .. seeds-1`` (initial weights, batch order, augmentation
    draws): a held-out speaker's accuracy moves by several points from one seed to the next, so a fold's
    figure is then the mean over its seeds, and ``"runs"`` keeps every seed's ``{speaker: {framework: [acc]}}``.
    """
    if seeds < 1:
        raise DiptychError(f"--seeds {seeds}: choose 1 or more trainings per fold")
    task = get_task(task_name)
    if task.objective.speaker_target is None:  # the objective knows whether its task has speakers to hold out
        speech = ", ".join(n for n, t in TASKS.items() if t.objective.speaker_target is not None)
        raise DiptychError(f"{task_name} has no speakers to leave out; the protocol takes one of {speech}")
    found = speakers(data_dir)
    unknown = [s for s in only or [] if s not in found]
    if unknown:
        raise DiptychError(f"--speakers: no speaker {unknown[0]!r} in the recordings; choose from {', '.join(found)}")
    folds = only or found
    workdir = Path(workdir)
    runs: dict[str, dict[str, list[float]]] = {}
    agreement: dict[str, dict[str, float]] = {}
    for speaker in folds:
        split = f"speaker:{speaker}"
        runs[speaker], agreement[speaker] = {}, {}
        for fw in frameworks:
            runs[speaker][fw], agree = [], []
            for seed in range(seeds):
                out = workdir / speaker / fw / (f"seed{seed}" if seeds > 1 else "")
                config = RunConfig(
                    task_name, fw, epochs, batch_size, data_dir=data_dir, split=split, progress=progress, seed=seed
                )
                runs[speaker][fw].append(train_and_evaluate(config, out)["test_accuracy"])
                for other in (f for f in frameworks if f != fw):
                    weights = out / "weights.safetensors"
                    same, cross = (evaluate_weights(task_name, f, weights, data_dir, split=split) for f in (fw, other))
                    agree.append(float(np.mean(same["predictions"] == cross["predictions"])))
            if agree:
                agreement[speaker][fw] = float(np.mean(agree))
    accuracy = {s: {fw: float(np.mean(runs[s][fw])) for fw in frameworks} for s in folds}
    record = {
        "task": task_name,
        "protocol": "leave-one-speaker-out",
        "frameworks": frameworks,
        "speakers": folds,
        "accuracy": accuracy,
        "mean": {fw: float(np.mean([accuracy[s][fw] for s in folds])) for fw in frameworks},
        "min": {fw: float(min(accuracy[s][fw] for s in folds)) for fw in frameworks},
        "target": task.objective.speaker_target,
        "agreement": agreement if len(frameworks) > 1 else None,
        "epochs": epochs or task.budget.epochs,
        "seeds": seeds,
        "runs": runs,
    }
    write_json(workdir / "loso.json", record)
    plot(record, workdir / "loso.png")
    return record


def plot(record: dict, path: Path) -> Path:
    """Bars: accuracy per held-out speaker, one bar per twin, the mean last; the targets as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folds, fws = record["speakers"], record["frameworks"]
    fig, ax = plt.subplots(figsize=(1.2 * len(folds) + 3, 4), dpi=120)
    width = 0.8 / len(fws)
    several = record["seeds"] > 1  # each seed's figure as a dot on its fold's bar: the spread behind the mean
    for i, fw in enumerate(fws):
        heights = [100 * record["accuracy"][s][fw] for s in folds] + [100 * record["mean"][fw]]
        xs = np.arange(len(folds) + 1) + (i - (len(fws) - 1) / 2) * width
        bars = ax.bar(xs, heights, width, label=fw)
        # the dots sit near the bar's top, so with several seeds the figure goes inside the bar
        ax.bar_label(bars, fmt="%.1f", fontsize=7, label_type="center" if several else "edge")
        if several:
            for x, s in zip(xs, folds):
                seeds = [100 * a for a in record["runs"][s][fw]]
                ax.plot(
                    [x] * len(seeds), seeds, "k.", markersize=4, label="one seed" if (i, s) == (0, folds[0]) else None
                )
    for value, label in zip(record["target"] or (), ("target mean", "target per speaker")):
        ax.axhline(100 * value, color="gray", linestyle="--" if label == "target mean" else ":", label=label)
    ax.set_xticks(np.arange(len(folds) + 1), [*folds, "mean"])
    ax.set(title=f"{record['task']}: accuracy on a held-out speaker", ylabel="test accuracy (%)", ylim=(50, 101))
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)  # beside the bars, not over them
    fig.tight_layout()
    write_figure(fig, path)
    plt.close(fig)
    return path


def table_rows(record: dict) -> list[list[str]]:
    """Rows of the terminal table: speaker, then per twin its accuracy (and agreement), then the mean."""
    rows = []
    for s in record["speakers"]:
        cells = [f"{100 * record['accuracy'][s][fw]:.1f}%" for fw in record["frameworks"]]
        rows.append([s, *cells])
    rows.append(["mean", *(f"{100 * record['mean'][fw]:.1f}%" for fw in record["frameworks"])])
    rows.append(["lowest", *(f"{100 * record['min'][fw]:.1f}%" for fw in record["frameworks"])])
    return rows

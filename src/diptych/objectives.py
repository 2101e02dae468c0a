"""Objectives: how a kind of task is loaded, scored and judged, owned by the task spec.

The driver, the CLI, ``bench``, ``compare`` and ``report`` never ask what kind of task they run;
they ask its :class:`Objective`:

* :meth:`Objective.load` gives the task (with any size that depends on the data filled in), its
  :class:`~diptych.data.Dataset` and *facts* about the data for the run record;
* :meth:`Objective.evaluate` scores a trainer on the test split (``{"test_accuracy": ...}``);
* :attr:`Objective.metric`, :attr:`Objective.higher_is_better` and :meth:`Objective.bar` say what
  "reached the target" means, and :meth:`Objective.reached` decides it;
* :meth:`Objective.score_line` is the one line the CLI prints at the end of a run.

:class:`Classification` scores accuracy; :class:`diptych.language.LanguageModelling` scores
held-out bits per character against the unigram baseline. A new kind of task (regression, a
ported model's own loss) is a new subclass; nothing else changes.

    >>> obj = Classification(0.99, "the classic CNN")
    >>> obj.metric, obj.higher_is_better, obj.bar({})
    ('test_accuracy', True, 0.99)
    >>> obj.reached({"test_accuracy": 0.9912}, obj.bar({}))
    True
    >>> obj.describe_target()
    '99.0%'
"""

from __future__ import annotations

import dataclasses

import numpy as np

from diptych.data import Dataset, eval_batches, load_dataset
from diptych.data.audio import shifted_views
from diptych.errors import DiptychError

EVAL_BATCH = 256  # rows per predict call: oneDNN's conv forward ran 2x slower on 1,000 than on 256 here


class Objective:
    """The contract every objective fulfils (see the module docstring); subclasses are frozen dataclasses."""

    metric: str  # key of the headline metric in an evaluation record
    higher_is_better: bool
    reference: str  # where the bar comes from
    target_accuracy: float | None  # an accuracy bar, where the objective has one (else None)
    speaker_target: tuple[float, float] | None = None  # speech: (mean, lowest) on a held-out speaker (diptych.loso)

    def load(
        self,
        task,
        data_dir: str | None = None,
        *,
        text: str | None = None,
        split: str | None = None,
        dataset: Dataset | None = None,
    ) -> tuple:
        """``(task, data, facts)``: the task with data-dependent sizes filled in, its data, and facts
        about the data that go into the run record (``{}`` when there are none)."""
        raise NotImplementedError

    def sized(self, task):
        """The task sized for its default data without loading it (for ``diptych list`` and FLOPs)."""
        return task

    def evaluate(self, trainer, data: Dataset, facts: dict | None = None, detail: bool = False) -> dict:
        """Metrics of ``trainer`` on the test split; ``detail`` adds per-sample results and the data's
        reference scores, where there are any (for ``diptych eval``)."""
        raise NotImplementedError

    def bar(self, facts: dict) -> float:
        """The value of :attr:`metric` that counts as reaching the target, for data with these facts."""
        raise NotImplementedError

    def reached(self, metrics: dict, bar: float) -> bool:
        value = metrics[self.metric]
        return value >= bar if self.higher_is_better else value <= bar

    def record(self, history: list[dict], facts: dict) -> dict:
        """The run record's fields about the result and the target."""
        bar = self.bar(facts)
        return {
            "test_accuracy": history[-1]["test_accuracy"],
            "target_accuracy": self.target_accuracy,
            "reached_target": self.reached(history[-1], bar),
        }

    def epoch_note(self, metrics: dict) -> str:
        """Extra words for an epoch's progress line beyond the test accuracy."""
        return ""

    def score_line(self, record: dict) -> str:
        """The result of a run (``train``) or of an evaluation (``eval``) in words."""
        raise NotImplementedError

    def describe_target(self) -> str:
        raise NotImplementedError

    def for_weights(self, task, meta):
        """The task sized as a weights file's :class:`~diptych.inference.InferenceMeta` says, where the
        data decides sizes the registry cannot know (own images); unchanged by default."""
        return task

    def fit(self, task, options: dict, saved: dict | None):
        """The task with this kind of task's own options applied (``options``: name -> value or None;
        ``saved``: a resumed run's settings). Tasks with none refuse any that is given."""
        for key, value in options.items():
            if value is not None:
                raise DiptychError(
                    f"--{key.replace('_', '-')} is for your own images (image-cnn --data-dir); "
                    f"{task.name} has its own data"
                )
        return task

    def settings(self, task) -> dict:
        """This kind of task's settings, recorded in run.json and the checkpoint (and kept on resume)."""
        return {}

    def inference_meta(self, data: Dataset, facts: dict) -> dict:
        """What prediction needs besides the weights, saved in ``weights.safetensors``."""
        return {"features": data.features} if data.features else {}


@dataclasses.dataclass(frozen=True)
class Classification(Objective):
    """One label per input; scored by test accuracy, reached at ``target_accuracy`` or above."""

    target_accuracy: float
    reference: str
    # speech: (mean, lowest) accuracy on a speaker left out of training (diptych.loso), beside the official split's
    speaker_target: tuple[float, float] | None = None
    metric = "test_accuracy"
    higher_is_better = True

    def load(self, task, data_dir=None, *, text=None, split=None, dataset=None):
        if text is not None:
            raise DiptychError(f"--text is for language-model tasks; {task.name} trains on {task.dataset}")
        if dataset is None:
            dataset = load_dataset(task.dataset, data_dir, split=split, frontend=task.frontend)
        return task, dataset, {}

    def evaluate(self, trainer, data, facts=None, detail=False):
        views = bool((data.features or {}).get("frontend", {}).get("views"))  # speech: averaged over shifted views
        preds = predict_classes(trainer, data.x_test, views)
        correct = int((preds == data.y_test).sum())
        metrics = {"test_accuracy": correct / len(data.y_test)}
        if detail:
            metrics |= {"correct": correct, "total": len(data.y_test), "predictions": preds}
        return metrics

    def bar(self, facts):
        return self.target_accuracy

    def score_line(self, record):
        if "target_accuracy" not in record:  # an evaluation of saved weights
            return f"test accuracy {100 * record['test_accuracy']:.2f}% ({record['correct']}/{record['total']})"
        return f"test accuracy {100 * record['test_accuracy']:.2f}% (target {100 * record['target_accuracy']:.1f}%)"

    def describe_target(self):
        if self.speaker_target is None:
            return f"{100 * self.target_accuracy:.1f}%"
        mean, lowest = self.speaker_target
        return (
            f"{100 * self.target_accuracy:.1f}% official split; {100 * mean:.0f}% mean on an unheard "
            f"speaker (none below {100 * lowest:.0f}%)"
        )


@dataclasses.dataclass(frozen=True)
class FolderClassification(Classification):
    """Classification of your own images (:mod:`diptych.data.images`): the data comes from ``--data-dir``,
    and the model's input size, channels and class count from the task's model spec and the folder."""

    val_fraction: float = 0.2  # held out per class when the folder has no train/ and test/
    classes: tuple[str, ...] | None = None  # set from trained weights: the folder must have these classes

    def load(self, task, data_dir=None, *, text=None, split=None, dataset=None):
        from diptych.data.images import load_image_folder

        if text is not None:
            raise DiptychError(f"--text is for language-model tasks; {task.name} trains on your images")
        if dataset is None:
            if data_dir is None:
                raise DiptychError(
                    f"{task.name} trains on your own images: pass --data-dir PATH, a folder with "
                    f"one subfolder of images per class (or train/ and test/ folders of them)"
                )
            size = task.model.input_shape()[0]
            dataset = load_image_folder(data_dir, size, task.model.in_channels, self.val_fraction)
        if self.classes is not None and tuple(dataset.classes or ()) != self.classes:
            raise DiptychError(
                f"the folder's classes ({', '.join(dataset.classes or [])}) are not the ones the "
                f"weights were trained on ({', '.join(self.classes)}); use the training folder layout"
            )
        model = dataclasses.replace(task.model, num_classes=dataset.num_classes)
        facts = {"classes": dataset.classes} if dataset.classes else {}
        return dataclasses.replace(task, model=model), dataset, facts

    def fit(self, task, options, saved):
        """``--image-size``, ``--channels`` and ``--val-fraction`` applied (or a resumed run's)."""
        given = {k: v if v is not None else (saved or {}).get(k) for k, v in options.items()}
        if given["channels"] not in (None, 1, 3):
            raise DiptychError(f"--channels must be 1 (grey) or 3 (RGB), got {given['channels']}")
        if given["image_size"] is not None and not 8 <= given["image_size"] <= 512:
            raise DiptychError(f"--image-size must be from 8 to 512 pixels, got {given['image_size']}")
        if given["val_fraction"] is not None and not 0 < given["val_fraction"] < 1:
            raise DiptychError(f"--val-fraction must be between 0 and 1, got {given['val_fraction']}")
        model = dataclasses.replace(
            task.model,
            in_size=given["image_size"] or task.model.in_size,
            in_channels=given["channels"] or task.model.in_channels,
        )
        objective = dataclasses.replace(self, val_fraction=given["val_fraction"] or self.val_fraction)
        return dataclasses.replace(task, model=model, objective=objective)

    def settings(self, task):
        return {
            "image_size": task.model.input_shape()[0],
            "channels": task.model.in_channels,
            "val_fraction": self.val_fraction,
        }

    def inference_meta(self, data, facts):
        return super().inference_meta(data, facts) | ({"classes": list(data.classes)} if data.classes else {})

    def for_weights(self, task, meta):
        if meta.features is None or meta.classes is None:
            return task
        fe = meta.features["frontend"]
        model = dataclasses.replace(
            task.model, in_size=fe["size"], in_channels=fe["channels"], num_classes=len(meta.classes)
        )
        return dataclasses.replace(task, model=model, objective=dataclasses.replace(self, classes=tuple(meta.classes)))


def predict_classes(trainer, x: np.ndarray, views: bool = False) -> np.ndarray:
    """Predicted class per row of ``x``, in chunks of :data:`EVAL_BATCH` (the one place evaluation is chunked).
    ``views``: the class of the probabilities averaged over :func:`class_probabilities`' shifted views."""
    if views:
        return class_probabilities(trainer, x, views).argmax(-1)
    return np.concatenate([trainer.predict(x[s]).argmax(-1) for s in eval_batches(len(x), EVAL_BATCH)])


def class_probabilities(trainer, x: np.ndarray, views: bool = False) -> np.ndarray:
    """Softmax probabilities ``(N, classes)`` (float64) for inputs ``x`` ``(N, ...)``; with ``views``, for
    log-mel ``(N, M, T)``, the mean over the nine shifted views of :func:`diptych.data.audio.shifted_views`."""
    probs = []
    for v in shifted_views(x) if views else [x]:
        logits = np.concatenate([trainer.predict(v[s]) for s in eval_batches(len(v), EVAL_BATCH)])  # (N, classes)
        probs.append(np.exp(log_softmax(logits.astype(np.float64))))
    return np.mean(probs, axis=0)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """``log softmax`` over the last axis, in the logits' own precision."""
    z = logits - logits.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))

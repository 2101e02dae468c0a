"""Inference metadata: what a trained model needs besides its weights, as one typed record.

``diptych train`` stores it in ``weights.safetensors`` (safetensors metadata, JSON values) and the
commands that predict (``eval``, ``generate``, ``transcribe``) read it back through
:meth:`InferenceMeta.read`, which validates every field, so a file from elsewhere cannot smuggle in
a wrong type (the audio front end's values are checked by :func:`diptych.data.audio_checks.check_features`).
The model spec (``model``, with any ``--set`` overrides applied) rebuilds the very model that was
trained (:meth:`InferenceMeta.fit_task`, :func:`diptych.overrides.spec_from_dict`).

    >>> m = InferenceMeta.from_metadata({"task": "chars-lstm", "vocab": "ab"}, "w.safetensors")
    >>> m.vocab, m.features is None
    ('ab', True)
    >>> InferenceMeta.from_metadata({"vocab": 3}, "w.safetensors")
    Traceback (most recent call last):
    ...
    diptych.errors.DiptychError: w.safetensors: metadata 'vocab' should be str, not int; ...
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from diptych.errors import DiptychError

_TYPES = {"task": str, "framework": str, "model": dict, "vocab": str, "features": dict, "classes": list}


@dataclasses.dataclass(frozen=True)
class InferenceMeta:
    task: str | None = None  # the task the weights were trained for
    framework: str | None = None  # the twin that trained them
    model: dict | None = None  # the model spec, as a dict
    vocab: str | None = None  # language models: the characters, in id order
    features: dict | None = None  # audio: front-end settings and the training split's per-band mean/std
    classes: list | None = None  # class names, where the data has them

    def to_metadata(self) -> dict:
        """The fields that are set, for :func:`diptych.weights.save_weights`'s keyword arguments."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_metadata(cls, meta: dict, source: str) -> InferenceMeta:
        fields = {}
        for key, kind in _TYPES.items():
            value = meta.get(key)
            if value is not None and not isinstance(value, kind):
                raise DiptychError(
                    f"{source}: metadata {key!r} should be {kind.__name__}, not "
                    f"{type(value).__name__}; the file was not written by diptych train"
                )
            fields[key] = value
        return cls(**fields)

    @classmethod
    def read(cls, path: str | Path, meta: dict) -> InferenceMeta:
        return cls.from_metadata(meta, str(path))

    def fit_task(self, task, source: str | Path):
        """``task`` with the model these weights were trained as (``--set`` overrides included), rebuilt
        from ``model``; unchanged when the file has none (a native ``.pt``/``.msgpack``, older weights).
        One line if that model cannot read the task's data (another kind of model, input or classes)."""
        if self.model is None:
            return task
        from diptych.overrides import data_misfit, spec_from_dict

        spec = spec_from_dict(self.model, str(source))
        misfit = data_misfit(task.model, spec)
        if misfit:
            raise DiptychError(
                f"{source} holds a model for other data than {task.name}'s ({spec.describe()}: {misfit}); "
                f"pass the task it was trained for"
            )
        return dataclasses.replace(task, model=spec)

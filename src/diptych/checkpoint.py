"""Checkpoints: everything needed to continue a run, in one atomically written safetensors file.

Tensors: ``params.<canonical name>`` (the model) and ``opt.<key>`` (the optimizer state: ``step``,
``exp_avg.<name>``, ``exp_avg_sq.<name>`` or ``momentum_buffer.<name>``), both in the canonical
PyTorch layout, so a checkpoint is framework-neutral: a run started by one twin can be resumed by
the other. Metadata: task, framework, the epoch just finished, the run config and the per-epoch
records so far. Batch order depends only on (seed, epoch), so resuming at an epoch boundary
continues the run where it stopped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diptych.errors import DiptychError
from diptych.weights import atomic_save, read_safetensors

FORMAT = "diptych.checkpoint/1"
FILENAME = "checkpoint.safetensors"


def save(path: str | Path, params: dict[str, np.ndarray], opt_state: dict[str, np.ndarray], **meta) -> None:
    tensors = {f"params.{k}": v for k, v in params.items()}
    tensors.update({f"opt.{k}": v for k, v in opt_state.items()})
    atomic_save(tensors, path, {"format": FORMAT, **meta})


def load(path: str | Path, task: str):
    """Return ``(params, opt_state, meta)``; refuse a checkpoint of another task."""
    tensors, meta = read_safetensors(path, what="checkpoint")
    if meta.get("format") != FORMAT:
        raise DiptychError(f"{path} is not a diptych checkpoint; pass the --out folder of a diptych train run")
    if meta.get("task") != task:
        raise DiptychError(
            f"{path} is a checkpoint of task {meta.get('task')!r}, not {task!r}; "
            f"resume with `diptych train {meta.get('task')}` or use another --out folder"
        )
    params = {k[len("params.") :]: v for k, v in tensors.items() if k.startswith("params.")}
    opt = {k[len("opt.") :]: v for k, v in tensors.items() if k.startswith("opt.")}
    return params, opt, meta

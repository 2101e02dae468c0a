"""Watching a run: the same scalar points from both twins, to TensorBoard and to ``metrics.jsonl``.

The driver calls one :class:`Observer` per run: :meth:`~Observer.on_losses` at every loss sync
(its groups of :data:`diptych.driver.SYNC_EVERY` steps), :meth:`~Observer.on_epoch` after each
evaluation and :meth:`~Observer.close` at the end. The points and their tags are the same for
both twins, so a torch run and a JAX run of one task overlay in one TensorBoard:

* ``train/loss``: the mean training loss of the steps since the previous point
* ``train/learning_rate``: the learning rate of the last optimizer step, from :mod:`diptych.schedules`
  and the task's optimizer spec (the curve both twins implement; the tests hold it to torch's
  ``get_last_lr`` and optax's schedule)
* ``train/samples_per_second``: this epoch's training throughput so far
* ``test/<metric>``: each ``test_<metric>`` the task's objective scores after an epoch

``metrics.jsonl`` in the run folder always gets the same points, one JSON object per line:
``{"step": 20, "wall_time": 1733040000.1, "train/loss": 0.52, ...}``, for people without
TensorBoard (``pandas.read_json(path, lines=True)`` reads it). With ``--tensorboard DIR`` the
event files go to ``DIR/<task>-<framework>``. Only the lead worker writes. Neutral: no torch/jax.

    >>> import json, tempfile
    >>> from diptych.tasks import get_task
    >>> task = get_task("mnist1d-mlp")
    >>> run = tempfile.mkdtemp()
    >>> obs = Observer(run, task, "torch", total_steps=100)
    >>> obs.on_losses(2, [0.9, 0.7], rate=1000.0)
    >>> obs.close()
    >>> point = json.loads(open(f"{run}/metrics.jsonl").read())
    >>> point["step"], round(point["train/loss"], 3), point["train/learning_rate"] == obs.learning_rate(2)
    (2, 0.8, True)
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from pathlib import Path

from diptych.errors import DiptychError
from diptych.fsio import atomic_write
from diptych.schedules import lr_factor

METRICS = "metrics.jsonl"
EXTRA = "tensorboard"  # pyproject's optional extra that installs tensorboardX


def tensorboard_writer_class():
    """tensorboardX's ``SummaryWriter``, or one line naming the extra to install.

    tensorboardX imports torch when it can (for ``add_graph``, unused here); a JAX run would then
    load torch and its OpenMP runtime for nothing (3 s, and threads that compete with XLA's), so
    torch is hidden from that one import unless the process already has it.
    """
    hide = "torch" not in sys.modules
    if hide:
        sys.modules["torch"] = None  # `import torch` raises ImportError, which tensorboardX handles
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise DiptychError(
            f"--tensorboard needs tensorboardX, which is not installed; install it with: pip install 'diptych[{EXTRA}]'"
        ) from None
    finally:
        if hide:
            del sys.modules["torch"]
    return SummaryWriter


def run_name(task: str, framework: str) -> str:
    """The run's folder inside ``--tensorboard DIR``: one per twin, so the two overlay by task."""
    return f"{task}-{framework}"


class Observer:
    """Scalar points of one run to ``metrics.jsonl`` (always) and TensorBoard (with ``tensorboard=DIR``).

    ``start_step``: the global step a resumed run continues from; points after it (from the part of the
    interrupted run that the checkpoint does not hold) are dropped from ``metrics.jsonl``, so the file
    has each step once. ``enabled=False`` (a worker other than the lead): every call does nothing.
    """

    def __init__(
        self,
        out_dir: str | Path,
        task,
        framework: str,
        total_steps: int,
        *,
        tensorboard: str | Path | None = None,
        start_step: int = 0,
        enabled: bool = True,
    ) -> None:
        self.enabled = enabled
        self.spec, self.total_steps = task.optimizer, total_steps
        self._last_step = start_step
        self._file = self._writer = None
        if not enabled:
            return
        writer_class = tensorboard_writer_class() if tensorboard is not None else None  # fail before any file
        path = Path(out_dir) / METRICS
        # A fresh file (or the resumed run's kept points) through the atomic writer, then appended to:
        # a planted symlink is replaced, not written through, and a crash keeps every point flushed.
        atomic_write(path, "".join(_points_up_to(path, start_step)) if start_step else "")
        self._file = path.open("a", encoding="utf-8")
        if writer_class is not None:
            self.log_dir = Path(tensorboard) / run_name(task.name, framework)
            # A SessionLog START at the first step this run logs: TensorBoard takes a run's first START as its
            # start and each later one (a resumed run's) as a restart that hides the points at or after it,
            # the interrupted run's points past its checkpoint.
            self._writer = writer_class(str(self.log_dir), flush_secs=10, purge_step=start_step + 1)

    def learning_rate(self, step: int) -> float:
        """The learning rate of optimizer step ``step`` (counted from 1): what the twins' schedulers
        give for it (torch's LambdaLR, optax's schedule at count ``step - 1``)."""
        spec = self.spec
        return spec.lr * lr_factor(spec.schedule, step - 1, self.total_steps, spec.warmup_fraction)

    def on_losses(self, step: int, losses, rate: float) -> None:
        """A loss sync after global step ``step`` (counted from 1). ``losses``: this epoch's per-step
        losses so far (their last ``step - previous step`` are the new ones); ``rate``: samples/s."""
        if not self.enabled:
            return
        new = list(losses[-max(step - self._last_step, 1) :])
        self._last_step = step
        self._point(
            step,
            {
                "train/loss": sum(map(float, new)) / len(new),
                "train/learning_rate": self.learning_rate(step),
                "train/samples_per_second": float(rate),
            },
        )

    def on_epoch(self, step: int, record: dict) -> None:
        """An epoch's record after global step ``step``: its ``test_*`` scores as ``test/*``."""
        if not self.enabled:
            return
        scores = {
            f"test/{k[len('test_') :]}": float(v)
            for k, v in record.items()
            if k.startswith("test_") and isinstance(v, int | float) and not isinstance(v, bool)
        }
        if scores:
            self._point(step, scores)

    def _point(self, step: int, values: dict[str, float]) -> None:
        wall = time.time()
        # JSON has no NaN/inf: a diverged loss is written as null (TensorBoard shows it as NaN).
        line = {"step": step, "wall_time": round(wall, 3)} | {
            k: (v if math.isfinite(v) else None) for k, v in values.items()
        }
        if self._file is not None:
            try:
                self._file.write(json.dumps(line) + "\n")
                self._file.flush()  # a crash keeps every point written so far
            except OSError as e:  # a full disk: the log stops, training goes on (its checkpoint says more)
                self._stop_metrics(e)
        if self._writer is not None:
            for tag, value in values.items():
                self._writer.add_scalar(tag, value, step, walltime=wall)

    def _stop_metrics(self, error: OSError) -> None:
        from diptych.progress import console

        path = self._file.name
        with contextlib.suppress(OSError):
            self._file.close()
        self._file = None
        console.print(
            f"[yellow]diptych: warning: {path}: {error.strerror or error}; no more points are logged there[/]"
        )

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError as e:
                self._stop_metrics(e)
            self._file = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> Observer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _points_up_to(path: Path, step: int) -> list[str]:
    """The lines of an earlier ``metrics.jsonl`` up to ``step`` (a resumed run keeps them); unreadable
    lines (a crash mid-line) are dropped."""
    if not path.exists():
        return []
    kept = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            point = json.loads(line)
        except ValueError:
            continue
        if isinstance(point, dict) and isinstance(point.get("step"), int) and point["step"] <= step:
            kept.append(line + "\n")
    return kept

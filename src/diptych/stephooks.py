"""Work the driver does between training steps, on a schedule: mid-epoch evaluations and a profiler trace.

* ``--eval-every N`` evaluates the test set after every N-th step (and after the run's last step) until the
  run first reaches its target, as AlgoPerf measures time to target: each point records the step, the
  **training clock** at that point (wall time spent training, compile included, evaluations and end-of-epoch
  work excluded), the evaluation's own seconds and the objective's scores. Time to target is then not
  quantized to epochs; the end-of-epoch evaluations go on as before.
* ``--profile-steps A:B`` traces steps A..B (counted from 1 over the whole run) with the twin's profiler
  (:mod:`diptych.backends.torch.profile`, :mod:`diptych.backends.jax.profile`) into ``RUN/profile/``,
  and keeps the top operations of one step (milliseconds and share of the step) for the run record.

The driver makes one :class:`StepHooks` per run and calls :meth:`StepHooks.after_step` once per step.
"""

from __future__ import annotations

import time
from pathlib import Path

from diptych.backends import load_backend
from diptych.errors import DiptychError


def parse_steps(text: str | None) -> tuple[int, int] | None:
    """``"A:B"`` -> ``(A, B)`` with ``1 <= A <= B``; ``None`` stays ``None``."""
    if text is None:
        return None
    try:
        a, b = (int(v) for v in text.split(":"))
    except ValueError:
        a = b = 0
    if not 1 <= a <= b:
        raise DiptychError(f"--profile-steps {text!r}: give A:B with 1 <= A <= B (steps counted from 1), e.g. 5:8")
    return a, b


class StepHooks:
    """Mid-epoch evaluations and the profiled range of one run (see the module docstring)."""

    def __init__(self, config, trainer, objective, data, facts, state, workdir: Path, steps_per_epoch: int, total):
        if config.eval_every is not None and config.eval_every < 1:
            raise DiptychError(f"--eval-every {config.eval_every}: give a number of steps >= 1, e.g. 100")
        self.trainer, self.objective, self.data, self.facts, self.state = trainer, objective, data, facts, state
        self.eval_every, self.steps_per_epoch, self.total = config.eval_every, steps_per_epoch, total
        self.bar = objective.bar(facts) if config.eval_every else None
        self.reached = any(objective.reached(p, self.bar) for p in state.evals)  # a resumed run's points count
        self.profile_steps = config.profile_steps
        if self.profile_steps and self.profile_steps[0] > total:
            a, b = self.profile_steps
            raise DiptychError(
                f"--profile-steps {a}:{b} starts after the run's last step ({total}); choose steps within the run"
            )
        self.profile_dir = Path(workdir) / "profile"
        self.profiler = load_backend(config.framework).profile if self.profile_steps else None
        self.profile: dict | None = None  # the record of the traced range, once it is finished
        self._mark = time.perf_counter()  # start of the training segment the clock has not counted yet
        self._loop: float | None = None  # the start time of the driver's step loop last seen
        self._trace = None
        self._paused = 0.0  # seconds off the clock (evaluations, writing the trace) since take_paused()
        if self.profile_steps and self.profile_steps[0] == 1 and state.epoch == 0:
            self._start_trace()

    def after_step(self, step: int, pending: list, t_loop: float) -> None:
        """Called after global step ``step`` (from 1) was dispatched; ``pending``: its unfetched loss handles;
        ``t_loop``: when the driver's current step loop began (an epoch's, or a resumed epoch's remainder)."""
        if t_loop != self._loop:  # a new loop: the time between loops (evaluation, checkpoint) is not training
            self._mark = self._loop = t_loop
        if self.profile_steps and step == self.profile_steps[0] - 1:
            self._sync(pending)
            self._start_trace()
        if self.profile_steps and step == self.profile_steps[1] and self._trace is not None:
            self._sync(pending)
            self._stop_trace()
        due = self.eval_every and not self.reached and (step % self.eval_every == 0 or step == self.total)
        if due:
            self._sync(pending)  # the queued steps finish now, on the training clock
            self._evaluate(step)
        elif step % self.steps_per_epoch == 0 or step == self.total:  # an epoch's last step (losses just fetched)
            self._tick()

    def _sync(self, pending: list) -> None:
        if pending:
            self.trainer.losses_to_numpy(pending)  # JAX dispatches asynchronously: wait for the work queued

    def _tick(self) -> float:
        now = time.perf_counter()
        self.state.train_clock += now - self._mark
        self._mark = now
        return now

    def _evaluate(self, step: int) -> None:
        t0 = self._tick()
        scores = self.objective.evaluate(self.trainer, self.data, self.facts)
        seconds = time.perf_counter() - t0
        self.state.evals.append(
            {"step": step, "train_seconds": round(self.state.train_clock, 3), "eval_seconds": round(seconds, 3)}
            | scores
        )
        self.reached = self.objective.reached(scores, self.bar)
        self._mark = time.perf_counter()  # the evaluation is off the training clock
        self._paused += self._mark - t0

    def _start_trace(self) -> None:
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        self._trace = (self.profiler.start(self.profile_dir), time.perf_counter())

    def _stop_trace(self) -> None:
        handle, t0 = self._trace
        wall = self._tick() - t0  # the caller has waited for the traced steps to finish: they are training
        self.profiler.stop(handle)  # writes the trace: off the clock
        a, b = self.profile_steps[0], min(self.profile_steps[1], self.total)
        steps = b - a + 1
        self.profile = {
            "steps": [a, b],
            "dir": str(self.profile_dir),
            "step_ms": round(1000 * wall / steps, 3),
            "top_ops": self.profiler.top_ops(self.profile_dir, steps, wall),
        }
        self._trace = None
        t1 = time.perf_counter()
        self._paused += t1 - t0 - wall
        self._mark = t1  # the trace's writing and parsing are not training

    def take_paused(self) -> float:
        """Seconds spent off the clock since the last call (the driver keeps them out of steady throughput)."""
        paused, self._paused = self._paused, 0.0
        return paused

    def record(self) -> dict:
        """What the run record gains: ``evals`` (when evaluating on a schedule) and ``profile`` (when traced)."""
        if self._trace is not None:  # the run ended inside the range: stop there
            self._stop_trace()
        out = {}
        if self.eval_every is not None:
            out["eval_every"] = self.eval_every
            out["train_clock_seconds"] = round(self.state.train_clock, 3)
            out["evals"] = self.state.evals
        if self.profile is not None:  # (a resumed run past the range has none)
            out["profile"] = self.profile
        return out


def format_top_ops(tables: dict[str, list[dict]], n: int = 12) -> list[str]:
    """A side-by-side Markdown table of each twin's top operations: ``{twin: top_ops}`` -> lines."""
    names = list(tables)
    head = "| # | " + " | ".join(f"{t} op | ms/step | share" for t in names) + " |"
    lines = [head, "|---|" + "---|---|---|" * len(names)]
    for i in range(min(n, max((len(v) for v in tables.values()), default=0))):
        cells = []
        for t in names:
            ops = tables[t]
            if i < len(ops):
                o = ops[i]
                cells += [f"`{o['name']}`", f"{o['ms_per_step']:.3f}", f"{o['share']:.1%}"]
            else:
                cells += ["", "", ""]
        lines.append(f"| {i + 1} | " + " | ".join(cells) + " |")
    return lines

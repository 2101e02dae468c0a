"""What a run carries from step to step (:class:`RunState`), and when and where the lead saves it
(:class:`Checkpoints`): the checkpoint file (:mod:`diptych.checkpoint`) holds the state as one unit, so a
resumed run continues exactly where the checkpoint left off.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from diptych import checkpoint
from diptych.data.feed import Feed
from diptych.errors import DiptychError, NonFiniteLossError
from diptych.fsio import write_error
from diptych.weights import save_weights

WEIGHTS = "weights.safetensors"
CHECKPOINT_SECONDS = 90.0  # the default cadence of step-level checkpoints, in seconds of training


@dataclass
class RunState:
    """What a run carries from epoch to epoch; the checkpoint saves and restores it as one unit."""

    epoch: int = 0  # epochs finished
    step: int = 0  # steps finished in the epoch under way (0 at an epoch boundary)
    epoch_losses: list[float] = field(default_factory=list)  # the global-batch losses of those steps
    epoch_seconds: float = 0.0  # ... and their training time (the run's first step excluded)
    history: list[dict] = field(default_factory=list)  # one record per epoch: loss, metrics, times
    loss_curve: list[list[float]] = field(default_factory=list)  # [global step, mean loss since the last point]
    wall_seconds: float = 0.0  # training and evaluation so far, compile included
    compile_seconds: float | None = None  # the first step's time (tracing/compilation)
    steady_samples: int = 0  # samples trained after the first step ...
    steady_seconds: float = 0.0  # ... and the time they took: steady throughput
    evals: list[dict] = field(default_factory=list)  # --eval-every points: step, train_seconds, eval_seconds, scores
    train_clock: float = 0.0  # seconds spent training (compile included, evaluations excluded): see stephooks

    def to_meta(self) -> dict:
        return {
            "epoch": self.epoch,
            "step": self.step,
            "epoch_losses": self.epoch_losses,
            "epoch_seconds": self.epoch_seconds,
            "epochs": self.history,
            "loss_curve": self.loss_curve,
            "wall_seconds": self.wall_seconds,
            "compile_seconds": self.compile_seconds,
            "steady_samples": self.steady_samples,
            "steady_seconds": self.steady_seconds,
            "evals": self.evals,
            "train_clock": self.train_clock,
        }

    @classmethod
    def from_meta(cls, meta: dict) -> RunState:
        return cls(
            meta["epoch"],
            meta.get("step", 0),
            meta.get("epoch_losses", []),
            meta.get("epoch_seconds", 0.0),
            meta["epochs"],
            meta.get("loss_curve", []),
            meta["wall_seconds"],
            meta["compile_seconds"],
            meta["steady_samples"],
            meta["steady_seconds"],
            _listed(meta.get("evals")),  # (absent from checkpoints before --eval-every)
            float(meta["train_clock"]) if isinstance(meta.get("train_clock"), int | float) else 0.0,
        )


def _listed(points) -> list[dict]:
    """A checkpoint's --eval-every points, or none when they are missing or malformed."""
    ok = isinstance(points, list) and all(isinstance(p, dict) and "step" in p for p in points)
    return points if ok else []


class Checkpoints:
    """Where and when the lead writes checkpoints: after every epoch, and within an epoch every
    ``checkpoint_every`` steps (or, by default, at the first loss sync after ``CHECKPOINT_SECONDS`` of
    training). Only at loss syncs: the epoch's losses are then all on the host, and every worker of a
    data-parallel run syncs at the same steps. ``keep`` > 1 keeps older ones beside the newest as
    ``checkpoint-step<N>.safetensors`` (hard links: no copy)."""

    def __init__(
        self,
        workdir: Path,
        trainer,
        feed: Feed,
        meta: dict,
        settings: dict,
        config,
        world,
        steps: int,
        t0: float,
    ):
        if config.checkpoint_every is not None and config.checkpoint_every < 0:
            raise DiptychError(f"--checkpoint-every {config.checkpoint_every}: give a number of steps >= 0")
        if config.keep < 1:
            raise DiptychError(f"--keep {config.keep}: keep at least 1 checkpoint")
        self.path, self.weights = workdir / checkpoint.FILENAME, workdir / WEIGHTS
        self.trainer, self.feed, self.meta, self.settings, self.world = trainer, feed, meta, settings, world
        self.every, self.keep, self.steps = config.checkpoint_every, config.keep, steps
        # A language model's carried state is split over the workers of a data-parallel run: such a
        # run checkpoints at epoch ends only, where no state is carried.
        self.mid_epoch = self.every != 0 and not (getattr(trainer, "stateful", False) and world.size > 1)
        self.t0, self.last = t0, time.perf_counter()  # the run's clock (resumed runs: shifted back), last save

    def trainer_steps(self, state: RunState) -> int:
        return state.epoch * self.steps + state.step

    def clock(self) -> float:
        return time.perf_counter() - self.t0

    def sync_due(self, global_step: int) -> bool:
        """Must the driver sync losses after ``global_step`` for a checkpoint? (The same on every worker.)"""
        return bool(self.mid_epoch and self.every and global_step % self.every == 0)

    def at_sync(self, state: RunState, global_step: int) -> None:
        """At a loss sync within an epoch: checkpoint if one is due."""
        if not self.mid_epoch:
            return
        due = global_step % self.every == 0 if self.every else time.perf_counter() - self.last >= CHECKPOINT_SECONDS
        if due:
            t = time.perf_counter()
            state.wall_seconds = self.clock()
            self.save(state)
            self.t0 += time.perf_counter() - t  # writing a checkpoint is not training time

    def save(self, state: RunState, final: bool = False) -> None:
        """The lead's checkpoint of ``state``; after the last epoch the final weights *first*, so that
        a checkpoint marked finished always has its weights beside it."""
        self.last = time.perf_counter()
        if not self.world.lead and not self.world.sharded:  # sharded state: every worker joins the gathers
            return
        params = _finite_weights(self.trainer, state.epoch, self.path)
        opt_state = self.trainer.export_opt_state()
        if not self.world.lead:
            return
        if final:
            save_weights(params, self.weights, **self.meta)
        if self.keep > 1 and self.path.exists():
            self._keep_previous()
        checkpoint.save(
            self.path,
            params,
            opt_state,
            self.trainer.export_carry() if state.step else None,
            task=self.meta["task"],
            framework=self.meta["framework"],
            config=self.settings,
            global_step=self.trainer_steps(state),
            data=self._data_state(),
            **state.to_meta(),
        )

    def _data_state(self) -> dict | None:
        """The streamed feed's position, Grain's iterator state included, for the record: a resume needs
        only ``(epoch, step)``, which the feed continues from exactly (the order is a function of them)."""
        state = self.feed.state() if hasattr(self.feed, "state") else None
        try:
            json.dumps(state)
        except (TypeError, ValueError):
            state = {k: v for k, v in state.items() if k != "grain"}
        return state

    def _keep_previous(self) -> None:
        """Hard-link the current newest checkpoint under its step before it is replaced; drop the oldest."""
        from safetensors import safe_open

        with safe_open(self.path, framework="numpy") as f:
            n = int(f.metadata().get("global_step", "0"))
        target = self.path.with_name(f"checkpoint-step{n:09d}.safetensors")
        try:
            if target.is_symlink():
                target.unlink()  # a planted link is replaced, never followed (nor a dangling one linked onto)
            if not target.exists():
                os.link(self.path, target)
        except OSError as e:
            raise write_error(target, e) from None
        kept = sorted(self.path.parent.glob("checkpoint-step*.safetensors"))
        for stale in kept[: max(0, len(kept) - (self.keep - 1))]:
            stale.unlink(missing_ok=True)


def _finite_weights(trainer, epoch: int, ckpt_path: Path) -> dict[str, np.ndarray]:
    """The weights to checkpoint after ``epoch`` (counted from 1), refusing non-finite ones: the last
    checkpoint must stay a good one."""
    params = trainer.export_weights()
    bad = next((k for k, v in params.items() if not np.isfinite(v).all()), None)
    if bad is not None:
        kept = f"the last good checkpoint {ckpt_path} is kept" if ckpt_path.exists() else "no checkpoint was written"
        raise NonFiniteLossError(
            f"weights became non-finite ({bad}) in epoch {epoch + 1}; training stopped "
            f"and {kept}; lower --lr and try again"
        )
    return params

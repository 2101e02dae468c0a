"""The training driver: one readable loop shared by both twins.

It owns epochs, seeded batches, evaluation, progress, checkpoints and the run record, and
calls the backend's ``Trainer`` (:class:`diptych.contracts.Trainer`) for the steps and the task's
``Objective`` (:mod:`diptych.objectives`) for the data and the scores. Because batch order depends only on
``(seed, epoch)``, the torch and JAX twins see identical batches in identical order, and a run
resumed from a checkpoint (written at epoch ends and every ``checkpoint_every`` steps) continues
bit for bit where the checkpoint left off.

    >>> import tempfile
    >>> from diptych import RunConfig, train_and_evaluate
    >>> rec = train_and_evaluate(RunConfig("mnist1d-mlp", "torch", epochs=1, progress=False), tempfile.mkdtemp())
    >>> rec["epochs"][0]["epoch"], rec["test_accuracy"] > 0.2, rec["world"]["processes"]
    (1, True, 1)
"""

from __future__ import annotations

import contextlib
import itertools
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diptych import checkpoint
from diptych.backends import load_backend
from diptych.data import Batches, Dataset
from diptych.data.augment import augmenter_for
from diptych.data.datasets import default_split
from diptych.data.feed import Feed, make_feed
from diptych.errors import DiptychError, NonFiniteLossError
from diptych.formats import read_any
from diptych.fsio import ensure_writable_dir
from diptych.inference import InferenceMeta
from diptych.launch import lost_peers_in_one_line
from diptych.observe import Observer
from diptych.overrides import check_model, overrides_for_run, spec_to_dict
from diptych.progress import TrainProgress
from diptych.records import hardware, peak_rss_mb, read_json, runtime, source_record, versions, write_json
from diptych.runstate import WEIGHTS, Checkpoints, RunState
from diptych.stephooks import StepHooks
from diptych.tasks import Task, choose_augment, get_task, training_steps
from diptych.weights import check_weights, save_weights

SYNC_EVERY = 20  # fetch losses from the device every N steps (JAX dispatches asynchronously)


@dataclass(frozen=True)
class RunConfig:
    """What to run. ``None`` means "the task's default"."""

    task: str
    framework: str
    epochs: float | None = None  # a fraction trains part of the last epoch (tasks.training_steps)
    batch_size: int | None = None
    lr: float | None = None
    optimizer: str | None = None
    schedule: str | None = None
    label_smoothing: float | None = None
    seed: int | None = None
    data_dir: str | None = None
    compile: bool = False
    precision: str = "fp32"
    device: str = "auto"  # auto | cpu | gpu
    resume: bool = False
    init_from: str | None = None
    progress: bool = True
    text: str | None = None  # language-model tasks: a UTF-8 corpus (default: Python's help text)
    split: str | None = None  # fsdd: "official" (default) or "speaker:NAME"
    augment: str | None = None  # image tasks: "none", "default" or OPS (see tasks.ImageAugmentSpec)
    image_size: int | None = None  # own images (image-cnn): the side images are resized to
    channels: int | None = None  # own images: 1 (grey) or 3 (RGB)
    val_fraction: float | None = None  # own images without train/ and test/: the share held out per class
    checkpoint_every: int | None = None  # steps between checkpoints; None: about every 90 s; 0: epoch ends only
    keep: int = 1  # step-level checkpoints kept (the newest is checkpoint.safetensors)
    data_workers: int | None = None  # packed data: background reader processes (None: chosen from the cores)
    tensorboard: str | None = None  # a folder: TensorBoard event files in <it>/<task>-<framework> (observe.py)
    eval_every: int | None = None  # also evaluate after every N-th step, off the training clock (stephooks)
    profile_steps: tuple[int, int] | None = None  # trace steps A..B with the twin's profiler (stephooks)
    shard: str = "none"  # "fsdp": parameters and optimizer state sharded over the workers (launch.SHARDS)
    sets: tuple[str, ...] = ()  # --set KEY=VALUE: the model spec's overrides (diptych.overrides)


@dataclass
class Run:
    """One training run's parts, built once by :func:`train_and_evaluate` and handed to each epoch."""

    config: RunConfig
    task: Task
    trainer: object  # the twin's Trainer (diptych.contracts.Trainer)
    feed: Feed  # this worker's shard of each global batch, from memory or a pack
    world: object  # the data-parallel world (diptych.launch.World)
    state: RunState  # what the checkpoints save: position, losses, history, timings
    augment: object | None  # the task's augmenter (diptych.data.augment), or None
    progress: TrainProgress
    saver: Checkpoints
    observer: Observer  # metrics.jsonl, TensorBoard
    hooks: StepHooks  # --eval-every, --profile-steps
    steps: int  # steps per epoch (this worker's shard of the batches)


def resolve(config: RunConfig, saved: dict | None = None) -> tuple[Task, dict]:
    """Apply CLI overrides to the task (or, when resuming, to the checkpoint's saved settings)."""
    task = get_task(config.task)
    keys = ("epochs", "batch_size", "lr", "optimizer", "schedule", "label_smoothing", "seed", "split")
    given = {k: getattr(config, k) for k in keys}
    if saved is not None:
        for key in ("batch_size", "optimizer", "schedule", "seed", "split"):
            if given[key] is not None and given[key] != saved.get(key):
                raise DiptychError(
                    f"cannot change --{key.replace('_', '-')} when resuming "
                    f"(the run used {saved.get(key)}); start a new run with another --out"
                )
        before = {"label_smoothing": 0.0}  # checkpoints from before a setting existed trained without it
        given = {k: given[k] if given[k] is not None else saved.get(k, before.get(k)) for k in given}
    augment = config.augment
    if saved is not None and saved.get("augment") is not None:  # a resumed run keeps its augmentation
        if augment is not None and choose_augment(task, augment).augment.describe() != saved["augment"]:
            raise DiptychError(
                f"cannot change --augment when resuming (the run used {saved['augment']}); "
                f"start a new run with another --out"
            )
        augment = saved["augment"]
    overrides = overrides_for_run(task.model, config.sets, saved)  # a resumed run keeps its own
    task = choose_augment(task.with_overrides(**given).with_model_overrides(overrides), augment)
    options = {k: getattr(config, k) for k in ("image_size", "channels", "val_fraction")}
    task = task.objective.fit(task, options, saved)  # the kind of task's own options (or the saved ones)
    check_model(task.model, prefix=f"{task.name}'s model")  # e.g. convs that shrink a small --image-size to nothing
    seed = given["seed"] if given["seed"] is not None else 0
    settings = {
        "epochs": task.budget.epochs,
        "batch_size": task.budget.batch_size,
        "lr": task.optimizer.lr,
        "optimizer": task.optimizer.name,
        "schedule": task.optimizer.schedule,
        "warmup_fraction": task.optimizer.warmup_fraction,
        "label_smoothing": task.optimizer.label_smoothing,
        "seed": seed,
        "compile": config.compile,
        "precision": config.precision,
        "split": given["split"] or default_split(task.dataset),
        "model_overrides": overrides,
    }
    if hasattr(task.augment, "describe"):  # an image augmentation, as OPS: what was applied, e.g. "shift:2,rotate:10"
        settings["augment"] = task.augment.describe()
    settings |= task.objective.settings(task)  # e.g. an image folder's size, channels and held-out share
    return task, settings


def train_batches(data: Dataset, batch_size: int, seed: int) -> Batches:
    """The seeded training batches; a language model's windows are read in order, so each row
    continues the previous batch's row (truncated BPTT), everything else is shuffled per epoch."""
    return Batches(len(data.x_train), batch_size, seed=seed, shuffle=not data.ordered)


def train_and_evaluate(config: RunConfig, workdir: str | Path, dataset: Dataset | None = None) -> dict:
    """Train ``config.task`` with ``config.framework``; write run.json, weights and checkpoints to ``workdir``.

    Every worker of a data-parallel run (or the one process) runs this on its shard of each global
    batch and returns the same record; only the lead prints and writes files. Resuming a run that
    already finished its budget trains nothing and returns its record with ``already_complete``.
    """
    workdir, backend = ensure_writable_dir(workdir), load_backend(config.framework)  # before any work
    saved = _read_checkpoint(workdir / checkpoint.FILENAME, config.task) if config.resume else None
    task, settings = resolve(config, saved and saved[2]["config"])
    objective = task.objective
    task, data, facts = objective.load(
        task, config.data_dir, text=config.text, split=settings["split"], dataset=dataset
    )
    world = backend.distributed.init(config.device, task.budget.batch_size, shard=config.shard)
    batches = train_batches(data, task.budget.batch_size, settings["seed"]).shard(world.rank, world.size)
    steps = batches.steps_per_epoch()
    total, epochs = training_steps(task.budget.epochs, steps)  # a fractional budget ends mid-epoch
    trainer = _make_trainer(backend, task, config, settings, world, total)
    state = _start(trainer, config, saved, settings, epochs, workdir, task)
    complete = state.epoch >= epochs  # a resumed run that had finished: nothing to train
    meta = _inference_meta(task, config.framework, objective.inference_meta(data, facts))  # the weights file's
    feed = make_feed(data, batches, config.data_workers)  # from memory, or streamed from a pack
    t0 = time.perf_counter() - state.wall_seconds  # the run's clock; a resumed run continues its time
    run = Run(
        config,
        task,
        trainer,
        feed,
        world,
        state,
        augment=augmenter_for(task, data, settings["seed"]),  # None unless the task augments
        progress=_progress(config, world, task.name, epochs, steps, total, state),
        saver=Checkpoints(workdir, trainer, feed, meta, settings, config, world, steps, t0),
        observer=Observer(  # observe.py: metrics.jsonl (and TensorBoard) from the lead; the same points in both twins
            workdir,
            task,
            config.framework,
            total,
            tensorboard=config.tensorboard,
            start_step=state.epoch * steps + state.step,
            enabled=world.lead and not complete,
        ),
        hooks=StepHooks(config, trainer, objective, data, facts, state, workdir, steps, total),  # stephooks
        steps=steps,
    )
    with lost_peers_in_one_line(world, backend.distributed), run.progress, contextlib.closing(feed), run.observer:
        for epoch in range(state.epoch, epochs):
            stop = min(steps, total - epoch * steps)  # the last epoch of a fractional budget ends early
            record = _train_epoch(run, epoch, stop)
            record |= objective.evaluate(trainer, data, facts)  # every worker: the same weights, the same scores
            _end_epoch(state, record, run.saver.clock(), run.progress, objective, epochs)
            run.observer.on_epoch(epoch * steps + stop, record)  # observe.py: test/<metric>, at the epoch's last step
            run.saver.save(state, final=epoch + 1 == epochs)
    if complete and (workdir / "run.json").is_file():
        record = read_json(workdir / "run.json")  # the finished run's own record, as it was written
    else:
        record = _run_record(task, config, settings, data, facts, trainer, state, world, backend) | run.hooks.record()
        # A run killed between its last checkpoint and its weights (the lead's view: sharded weights are
        # gathered by every worker, so they all ask).
        missing = world.lead and not (workdir / WEIGHTS).exists()
        missing = world.gather(missing)[0] if world.sharded else missing
        params = trainer.export_weights() if missing and (world.lead or world.sharded) else None
        if world.lead:
            if params is not None:
                save_weights(params, workdir / WEIGHTS, **meta)
            write_json(workdir / "run.json", record)
    world.close()
    return record | ({"already_complete": True, "world": world.record()} if complete else {})


def _make_trainer(backend, task: Task, config: RunConfig, settings: dict, world, total_steps: int):
    """The twin's Trainer for this run (data-parallel through ``world``; ``--compile`` or the twin's idiom)."""
    compile = True if config.compile else None
    return backend.train.Trainer(
        task,
        settings["seed"],
        total_steps,
        precision=config.precision,
        device=world.device,
        compile=compile,
        world=world,
    )


def _progress(
    config: RunConfig, world, label: str, epochs: int, steps: int, total: int, state: RunState
) -> TrainProgress:
    return TrainProgress(
        enabled=config.progress and world.lead and state.epoch < epochs,
        total=total,
        completed=state.epoch * steps + state.step,
        label=f"{label} [{config.framework}]",
        epochs=epochs,
    )


def _inference_meta(task: Task, framework: str, extra: dict) -> dict:
    """What ``weights.safetensors`` carries besides the weights (:class:`InferenceMeta`)."""
    meta = InferenceMeta(task=task.name, framework=framework, model=spec_to_dict(task.model), **extra)
    return meta.to_metadata()


def _read_checkpoint(path: Path, task: str) -> tuple:
    """``(params, opt_state, meta)`` of the checkpoint to resume from."""
    if not path.exists() and not path.is_symlink():
        raise DiptychError(f"no checkpoint to resume in {path.parent}; run without --resume first")
    if path.is_dir():
        raise DiptychError(
            f"{path} is a folder, not a checkpoint file; move it out of {path.parent} (there is no checkpoint to "
            f"resume: run without --resume) or pass another --out"
        )
    return checkpoint.load(path, task)


def _start(
    trainer, config: RunConfig, saved: tuple | None, settings: dict, epochs: int, workdir: Path, task: Task
) -> RunState:
    """Load the checkpoint (or ``--init-from`` weights) into ``trainer``; the state to continue from.
    A checkpoint that finished its budget is complete when asked again with the same settings (a requeued
    job), and continues when asked for more epochs."""
    if saved is not None and config.init_from:
        raise DiptychError(
            "--init-from and --resume conflict: a resumed run continues from its checkpoint; "
            "drop --init-from, or start a new run with another --out"
        )
    if saved is None:
        if config.init_from:
            init, _, _ = read_any(config.init_from, task.model)  # any format; a native file: this run's model
            trainer.load_weights(init, config.init_from)
        return RunState()
    params, opt_state, meta = saved
    state = RunState.from_meta(meta)
    if state.epoch >= epochs and (workdir / WEIGHTS).exists():
        _check_finished(meta["config"], settings, state.epoch, workdir)
    trainer.load_weights(params, "checkpoint")
    trainer.load_opt_state(opt_state)
    trainer.load_carry(meta["carry"])  # a language model stopped mid-epoch: the state its next window continues
    return state


def _check_finished(saved: dict, settings: dict, finished: int, workdir: Path) -> None:
    """A finished run resumed with other settings would train nothing: say which setting differs."""
    if settings["epochs"] != saved.get("epochs"):
        raise DiptychError(
            f"the run in {workdir} already finished {finished} epochs (--epochs {saved.get('epochs')}); "
            f"pass a larger --epochs to train further"
        )
    changed = sorted(k for k in settings if k in saved and settings[k] != saved[k])
    if changed:
        given = ", ".join(f"--{k.replace('_', '-')} {settings[k]} (the run used {saved[k]})" for k in changed)
        raise DiptychError(
            f"the run in {workdir} is complete; {given} would not change it: start a new run with another --out"
        )


def _train_epoch(run: Run, epoch: int, stop: int) -> dict:
    """This worker's shard of the epoch's batches, from ``run.state.step`` on (0, or where a checkpoint
    stopped) up to ``stop``; updates the state's position, losses, curve and timing, and checkpoints when due."""
    trainer, state, saver, world = run.trainer, run.state, run.saver, run.world
    batch, last = run.feed.batches.batch_size, stop - 1  # the epoch's last step here
    if state.step == 0:  # a fresh epoch; a resumed one keeps its losses and, mid-epoch, its carried state
        state.epoch_losses, state.epoch_seconds = [], 0.0
        trainer.reset_state()  # language models: each epoch's streams start from a zero state
    t_sync, pending = time.perf_counter(), []
    t_loop = t_sync  # stephooks: the training clock's segment starts here
    batches = itertools.islice(run.feed.epoch(epoch, state.step), last + 1 - state.step)
    for step, (x, y) in enumerate(batches, state.step):  # (B, ...) float32, (B,) int32
        t0 = time.perf_counter()
        aug = run.augment(x, epoch, step) if run.augment else None  # drawn in numpy, applied on device
        pending.append(trainer.train_step(x, y, aug))
        first = state.compile_seconds is None  # the first step of the run pays for tracing/compilation
        done = epoch * run.steps + step + 1  # global steps done
        if first or len(pending) >= SYNC_EVERY or step == last or saver.sync_due(done):
            losses = world.mean(trainer.losses_to_numpy(pending))  # global-batch losses
            now = time.perf_counter()
            if first:
                state.compile_seconds = now - t0
            else:
                state.epoch_seconds += now - t_sync
                state.steady_samples += len(pending) * batch
                state.loss_curve.append([done, float(np.mean(losses))])
            state.epoch_losses.extend(float(v) for v in losses)
            state.step, pending = step + 1, []
            _check_finite(state.epoch_losses, epoch, run.steps, saver.path)
            rate = len(losses) * batch / max(now - t_sync, 1e-9)  # samples/s since the last sync
            loss = float(np.mean(state.epoch_losses[-SYNC_EVERY:]))
            run.progress.update(done, loss=loss, rate=rate, epoch=epoch + 1)
            run.observer.on_losses(done, state.epoch_losses, rate)  # observe.py: train/loss, lr, samples/s
            if step < last:
                saver.at_sync(state, done)
            t_sync = time.perf_counter()
        run.hooks.after_step(done, pending, t_loop)  # --eval-every, --profile-steps: their time is not steady time
        t_sync += run.hooks.take_paused()
    record = {
        "epoch": epoch + 1,
        "train_loss": float(np.mean(state.epoch_losses)),
        "train_seconds": round(state.epoch_seconds, 3),
    }
    state.steady_seconds += state.epoch_seconds
    state.step, state.epoch_losses, state.epoch_seconds = 0, [], 0.0  # at the boundary: nothing under way
    return record


def _end_epoch(state: RunState, record: dict, wall: float, progress: TrainProgress, objective, epochs: int) -> None:
    """Add the epoch's record to the run state, and log it (about ten lines in a run at most)."""
    record["wall_seconds"] = round(wall, 3)
    state.history.append(record)
    state.epoch, state.wall_seconds = record["epoch"], wall
    epoch = record["epoch"]
    if epochs <= 20 or epoch % (epochs // 10) == 0 or epoch == epochs:
        progress.log(
            f"epoch {epoch}/{epochs}  loss {record['train_loss']:.4f}  test acc "
            f"{100 * record['test_accuracy']:.2f}%{objective.epoch_note(record)}  wall {wall:.1f}s"
        )


def _check_finite(losses: list[float], epoch: int, steps_per_epoch: int, ckpt_path: Path) -> None:
    bad = np.flatnonzero(~np.isfinite(np.asarray(losses)))
    if bad.size:
        step = epoch * steps_per_epoch + int(bad[0]) + 1
        kept = f"the last good checkpoint {ckpt_path} is kept" if ckpt_path.exists() else "no checkpoint was written"
        raise NonFiniteLossError(
            f"loss became {losses[bad[0]]} at step {step} (epoch {epoch + 1}); "
            f"training stopped and {kept}; lower --lr and try again"
        )


def _run_record(
    task: Task, config: RunConfig, settings: dict, data: Dataset, facts: dict, trainer, state: RunState, world, backend
) -> dict:
    """``run.json``: what ran, on what, and how it went (the objective adds its scores and target)."""
    return {
        "task": task.name,
        "framework": config.framework,
        "versions": versions(backend.train.versions()),
        "hardware": hardware(backend.train.device_name()),
        "config": settings,
        "dataset": {
            "name": data.name,
            "train": len(data.y_train),
            "test": len(data.y_test),
            **{k: v for k, v in facts.items() if k != "unigram_bpc"},
        },
        "model": spec_to_dict(task.model),  # the model as built: `--set` overrides (config) applied
        "num_params": trainer.num_params(),
        "epochs": state.history,
        **task.objective.record(state.history, facts),
        "compile_seconds": round(state.compile_seconds, 3),
        "samples_per_second": round(state.steady_samples / max(state.steady_seconds, 1e-9), 1),
        "wall_seconds": state.history[-1]["wall_seconds"],
        "peak_rss_mb": peak_rss_mb(),
        "loss_curve": state.loss_curve,
        "world": world.record(),
        "memory": _memory(trainer, world),
        "runtime": runtime(backend.train.runtime(world.device)),  # threads, XLA/OMP env, accelerator libraries
        **source_record(),  # "git": the checkout's commit and dirty flag, when run from one
    }


def _memory(trainer, world) -> dict:
    """What each worker holds of the training state (``Trainer.held_bytes``), in rank order: with
    ``--shard fsdp`` over N devices, about 1/N of the totals each (a collective: every worker calls it)."""
    every = world.gather(trainer.held_bytes())
    total = {k: v for k, v in every[0].items() if k.endswith("_total")}
    local = {k: [w[k] for w in every] for k in every[0] if not k.endswith("_total")}
    return {"shard": world.shard, **total, **local}


def evaluate_weights(
    task_name: str,
    framework: str,
    weights_path: str | Path,
    data_dir: str | None = None,
    dataset: Dataset | None = None,
    text: str | None = None,
    split: str | None = None,
) -> dict:
    """The objective's scores of a weights file (from either twin) evaluated by ``framework``."""
    task = get_task(task_name)
    params, _, meta = read_any(weights_path)  # canonical, torch .pt or Flax .msgpack
    info = InferenceMeta.read(weights_path, meta)
    task = info.fit_task(task.objective.for_weights(task, info), weights_path)  # the model as trained (--set)
    check_weights(params, task.model.sized_like(params).param_shapes(), str(weights_path))  # before any data
    task, data, facts = task.objective.load(task, data_dir, text=text, split=split, dataset=dataset)
    check_weights(params, task.model.param_shapes(), str(weights_path))  # a language model: against its corpus
    trainer = load_backend(framework).train.Trainer(task, 0, 1)
    trainer.load_weights(params, str(weights_path))
    return {"task": task.name, "framework": framework, "weights": str(weights_path)} | task.objective.evaluate(
        trainer, data, facts, detail=True
    )

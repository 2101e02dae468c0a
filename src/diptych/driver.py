"""The training driver: one readable loop shared by both twins.

It owns epochs, seeded batches, evaluation, progress, checkpoints and the run record, and
calls the backend's ``Trainer`` for the steps. Because batch order depends only on
``(seed, epoch)``, the torch and JAX twins see identical batches in identical order, and a
resumed run continues exactly where the checkpoint left off.

    >>> from diptych import RunConfig, train_and_evaluate          # doctest: +SKIP
    >>> rec = train_and_evaluate(RunConfig("mnist1d-mlp", "torch", epochs=2), "runs/x")
    >>> sorted(rec)[:3]
    ['compile_seconds', 'config', 'epochs']
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diptych import checkpoint, language
from diptych.backends import load_backend
from diptych.data import Batches, Dataset, eval_batches, load_dataset
from diptych.data.augment import augmenter_for
from diptych.errors import DiptychError, NonFiniteLossError
from diptych.progress import TrainProgress
from diptych.records import hardware, peak_rss_mb, versions, write_json
from diptych.tasks import Task, get_task
from diptych.convert import read_any
from diptych.weights import check_weights, save_weights

SYNC_EVERY = 20  # fetch losses from the device every N steps (JAX dispatches asynchronously)
EVAL_BATCH = 1000


@dataclass(frozen=True)
class RunConfig:
    """What to run. ``None`` means "the task's default"."""

    task: str
    framework: str
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    optimizer: str | None = None
    schedule: str | None = None
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


def resolve(config: RunConfig, saved: dict | None = None) -> tuple[Task, dict]:
    """Apply CLI overrides to the task (or, when resuming, to the checkpoint's saved settings)."""
    task = get_task(config.task)
    given = {k: getattr(config, k) for k in ("epochs", "batch_size", "lr", "optimizer", "schedule", "seed", "split")}
    if saved is not None:
        for key in ("batch_size", "optimizer", "schedule", "seed", "split"):
            if given[key] is not None and given[key] != saved.get(key):
                raise DiptychError(f"cannot change --{key.replace('_', '-')} when resuming "
                                   f"(the run used {saved.get(key)}); start a new run with another --out")
        given = {k: given[k] if given[k] is not None else saved.get(k) for k in given}
    task = task.with_overrides(**given)
    seed = given["seed"] if given["seed"] is not None else 0
    settings = {"epochs": task.budget.epochs, "batch_size": task.budget.batch_size, "lr": task.optimizer.lr,
                "optimizer": task.optimizer.name, "schedule": task.optimizer.schedule,
                "warmup_fraction": task.optimizer.warmup_fraction, "seed": seed, "compile": config.compile,
                "precision": config.precision,
                "split": given["split"] or ("official" if task.dataset == "fsdd" else None)}
    return task, settings


def load_task_data(task: Task, data_dir: str | None = None, text: str | None = None,
                   dataset: Dataset | None = None, split: str | None = None) -> tuple[Task, Dataset, dict | None]:
    """The task's data, and the task itself with a language model's vocabulary size filled in.

    Language-model tasks get TBPTT windows of their corpus (``text``, default: Python's help text)
    and facts about it (vocabulary, unigram bits/char) as the third item; other tasks get ``None``.
    """
    if task.dataset == "text":
        return language.text_dataset(task, text, task.budget.batch_size)
    if text is not None:
        raise DiptychError(f"--text is for language-model tasks; {task.name} trains on {task.dataset}")
    return task, dataset if dataset is not None else load_dataset(task.dataset, data_dir, split=split), None


def train_batches(data: Dataset, batch_size: int, seed: int) -> Batches:
    """The seeded training batches; a language model's windows are read in order, so each row
    continues the previous batch's row (truncated BPTT), everything else is shuffled per epoch."""
    return Batches(len(data.x_train), batch_size, seed=seed, shuffle=not data.ordered)


def evaluate(trainer, x: np.ndarray, y: np.ndarray) -> tuple[int, np.ndarray]:
    """Return (number correct, predicted classes) over the whole split."""
    preds = np.concatenate([trainer.predict(x[s]).argmax(-1) for s in eval_batches(len(x), EVAL_BATCH)])
    return int((preds == y).sum()), preds


def train_and_evaluate(config: RunConfig, workdir: str | Path, dataset: Dataset | None = None) -> dict:
    """Train ``config.task`` with ``config.framework``; write run.json, weights and checkpoints to ``workdir``."""
    workdir = Path(workdir)
    ckpt_path = workdir / checkpoint.FILENAME
    backend = load_backend(config.framework)
    # One worker of a data-parallel run (or a world of one). Every worker runs this loop on its shard
    # of each global batch; only the lead evaluates, prints and writes files.
    world = backend.distributed.init(config.device)
    saved = None
    if config.resume:
        if not ckpt_path.exists():
            raise DiptychError(f"no checkpoint to resume in {workdir}; run without --resume first")
        params, opt_state, saved = checkpoint.load(ckpt_path, config.task)
    task, settings = resolve(config, saved and saved["config"])
    task, data, text_info = load_task_data(task, config.data_dir, config.text, dataset, settings["split"])
    lm = text_info is not None
    augment = augmenter_for(task, data, settings["seed"])  # None unless the task augments
    batches = train_batches(data, task.budget.batch_size, settings["seed"]).shard(world.rank, world.size)
    steps_per_epoch = batches.steps_per_epoch()
    epochs = task.budget.epochs
    trainer = backend.train.Trainer(task, settings["seed"], epochs * steps_per_epoch, compile=config.compile,
                                    precision=config.precision, device=world.device)

    history: list[dict] = []
    loss_curve: list[list[float]] = []  # [global step, mean loss since the previous point]
    start_epoch, wall_offset, compile_seconds = 0, 0.0, None
    steady_samples, steady_seconds = 0, 0.0
    if saved is not None:
        trainer.load_weights(params, str(ckpt_path))
        trainer.load_opt_state(opt_state)
        start_epoch, history = saved["epoch"], saved["epochs"]
        loss_curve = saved.get("loss_curve", [])
        wall_offset, compile_seconds = saved["wall_seconds"], saved["compile_seconds"]
        steady_samples, steady_seconds = saved["steady_samples"], saved["steady_seconds"]
        if start_epoch >= epochs:
            raise DiptychError(f"the checkpoint in {workdir} already finished {start_epoch} epochs; "
                               f"pass a larger --epochs to train further")
    elif config.init_from:
        init, _, _ = read_any(config.init_from)  # canonical, torch .pt or Flax .msgpack
        trainer.load_weights(init, config.init_from)
    trainer = world.parallelize(trainer)  # after loading: the wrapper starts from the loaded state

    progress = TrainProgress(enabled=config.progress and world.lead, total=epochs * steps_per_epoch,
                             completed=start_epoch * steps_per_epoch, label=f"{task.name} [{config.framework}]")
    t_start = time.perf_counter() - wall_offset
    with progress:
        for epoch in range(start_epoch, epochs):
            t_epoch, pending, losses = time.perf_counter(), [], []
            first_step_seconds = 0.0
            trainer.reset_state()  # language models: each epoch's streams start from a zero state
            for step, idx in enumerate(batches.epoch(epoch)):
                x, y = data.x_train[idx], data.y_train[idx]  # (B, ...) float32, (B,) int32
                aug = augment(x, epoch, step) if augment else None  # drawn here, applied on device
                if compile_seconds is None:  # the first step pays for tracing/compilation
                    t0 = time.perf_counter()
                    pending.append(trainer.train_step(x, y, aug))
                    losses.extend(world.mean(trainer.losses_to_numpy(pending)))
                    pending = []
                    compile_seconds = first_step_seconds = time.perf_counter() - t0
                else:
                    pending.append(trainer.train_step(x, y, aug))
                if len(pending) >= SYNC_EVERY or step == steps_per_epoch - 1:
                    if pending:
                        losses.extend(world.mean(trainer.losses_to_numpy(pending)))  # global-batch losses
                        loss_curve.append([epoch * steps_per_epoch + step + 1,
                                           float(np.mean(losses[-len(pending):]))])
                        pending = []
                    _check_finite(losses, epoch, steps_per_epoch, ckpt_path)
                    done = step + 1
                    rate = (done * task.budget.batch_size) / max(time.perf_counter() - t_epoch, 1e-9)
                    progress.update(epoch * steps_per_epoch + done, loss=float(np.mean(losses[-SYNC_EVERY:])),
                                    rate=rate, epoch=epoch + 1, epochs=epochs)
            train_seconds = time.perf_counter() - t_epoch - first_step_seconds
            steady_seconds += train_seconds
            steady_samples += (steps_per_epoch - (1 if first_step_seconds else 0)) * task.budget.batch_size
            if not world.lead:
                continue

            record = {"epoch": epoch + 1, "train_loss": float(np.mean(losses))}
            if lm:  # next-character accuracy and bits/char on the held-out text
                scores = language.evaluate_lm(trainer, data.x_test, data.y_test)
                record |= {"test_accuracy": scores["accuracy"], "test_bpc": scores["bpc"]}
            else:
                record["test_accuracy"] = evaluate(trainer, data.x_test, data.y_test)[0] / len(data.y_test)
            record |= {"train_seconds": round(train_seconds, 3), "wall_seconds": round(time.perf_counter() - t_start, 3)}
            history.append(record)
            if epochs <= 20 or (epoch + 1) % (epochs // 10) == 0 or epoch + 1 == epochs:  # ~10 lines at most
                bpc = f"  bits/char {record['test_bpc']:.3f}" if lm else ""
                progress.log(f"epoch {epoch + 1}/{epochs}  loss {record['train_loss']:.4f}  "
                             f"test acc {100 * record['test_accuracy']:.2f}%{bpc}  wall {record['wall_seconds']:.1f}s")
            checkpoint.save(ckpt_path, trainer.export_weights(), trainer.export_opt_state(),
                            task=task.name, framework=config.framework, epoch=epoch + 1, config=settings,
                            epochs=history, wall_seconds=time.perf_counter() - t_start,
                            compile_seconds=compile_seconds, steady_samples=steady_samples,
                            steady_seconds=steady_seconds, loss_curve=loss_curve)

    if not world.lead:
        world.close()
        return {"task": task.name, "framework": config.framework, "rank": world.rank}
    extra = {"vocab": text_info["vocab"]} if lm else {}  # a language model is useless without its vocabulary
    if data.features:
        extra["features"] = data.features  # audio: what transcribe needs
    save_weights(trainer.export_weights(), workdir / "weights.safetensors", task=task.name,
                 framework=config.framework, model=dataclasses.asdict(task.model), **extra)
    run = {
        "task": task.name, "framework": config.framework,
        "versions": versions(backend.train.versions()), "hardware": hardware(backend.train.device_name()),
        "config": settings, "dataset": {"name": data.name, "train": len(data.y_train), "test": len(data.y_test)},
        "num_params": trainer.num_params(), "epochs": history,
        "test_accuracy": history[-1]["test_accuracy"],
        "target_accuracy": task.target.test_accuracy,
        "reached_target": history[-1]["test_accuracy"] >= task.target.test_accuracy,
        "compile_seconds": round(compile_seconds, 3),
        "samples_per_second": round(steady_samples / max(steady_seconds, 1e-9), 1),
        "wall_seconds": history[-1]["wall_seconds"], "peak_rss_mb": peak_rss_mb(),
        "loss_curve": loss_curve, "world": world.record(),
    }
    if lm:  # the target is bits/char against the unigram baseline, not accuracy
        bar = task.target.bpc_vs_unigram * text_info["unigram_bpc"]
        run |= {"test_bpc": history[-1]["test_bpc"], "unigram_bpc": text_info["unigram_bpc"], "target_bpc": bar,
                "reached_target": history[-1]["test_bpc"] <= bar, "target_accuracy": None,
                "dataset": run["dataset"] | {k: v for k, v in text_info.items() if k != "unigram_bpc"}}
    write_json(workdir / "run.json", run)
    world.close()
    return run


def _check_finite(losses: list[float], epoch: int, steps_per_epoch: int, ckpt_path: Path) -> None:
    bad = np.flatnonzero(~np.isfinite(np.asarray(losses)))
    if bad.size:
        step = epoch * steps_per_epoch + int(bad[0]) + 1
        kept = f"the last good checkpoint {ckpt_path} is kept" if ckpt_path.exists() else "no checkpoint was written"
        raise NonFiniteLossError(f"loss became {losses[bad[0]]} at step {step} (epoch {epoch + 1}); "
                                 f"training stopped and {kept}; lower --lr and try again")


def evaluate_weights(task_name: str, framework: str, weights_path: str | Path, data_dir: str | None = None,
                     dataset: Dataset | None = None, text: str | None = None, split: str | None = None) -> dict:
    """Test accuracy of a weights file (from either twin) evaluated by ``framework``."""
    task = get_task(task_name)
    params, _, _ = read_any(weights_path)  # canonical, torch .pt or Flax .msgpack
    task, data, text_info = load_task_data(task, data_dir, text, dataset, split)
    check_weights(params, task.model.param_shapes(), str(weights_path))
    backend = load_backend(framework)
    trainer = backend.train.Trainer(task, 0, 1)
    trainer.load_weights(params, str(weights_path))
    result = {"task": task.name, "framework": framework, "weights": str(weights_path)}
    if text_info is not None:  # a language model: bits/char and next-character accuracy
        scores = language.evaluate_lm(trainer, data.x_test, data.y_test)
        return result | {"test_accuracy": scores["accuracy"], "test_bpc": scores["bpc"],
                         "unigram_bpc": text_info["unigram_bpc"], "correct": None, "total": int(data.y_test.size),
                         "predictions": None}
    correct, preds = evaluate(trainer, data.x_test, data.y_test)
    return result | {"test_accuracy": correct / len(data.y_test), "correct": correct, "total": len(data.y_test),
                     "predictions": preds}

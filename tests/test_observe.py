"""Observability: ``--tensorboard`` event files and ``metrics.jsonl`` with the same points from both twins,
the logged learning rate equal to each twin's own, ``run.json``'s runtime record, and the torch thread policy."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_one_line_error, cli_in_process, random_batch, run_cli
from diptych import RunConfig, train_and_evaluate
from diptych.launch import usable_cores
from diptych.observe import Observer, run_name
from diptych.tasks import get_task

TAGS = {"train/loss", "train/learning_rate", "train/samples_per_second", "test/accuracy"}


def read_events(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in a folder's TensorBoard event files, ``{tag: [(step, value), ...]}``, read with
    tensorboardX's protobuf definitions (the TFRecord framing: length, its CRC, the record, its CRC)."""
    from tensorboardX.proto import event_pb2

    scalars: dict[str, list[tuple[int, float]]] = {}
    files = sorted(folder.glob("events.out.tfevents.*"))
    assert files, f"no event file in {folder}"
    for path in files:
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
            pos += 12 + length + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def read_metrics(path: Path) -> dict[str, list[tuple[int, float]]]:
    points: dict[str, list[tuple[int, float]]] = {}
    for line in path.read_text().splitlines():
        point = json.loads(line)
        assert isinstance(point["step"], int) and point["wall_time"] > 1.6e9
        for tag, value in point.items():
            if tag not in ("step", "wall_time"):
                points.setdefault(tag, []).append((point["step"], value))
    return points


def test_tensorboard_and_metrics_jsonl_have_the_same_points_in_both_twins(mnist1d, tmp_path):
    """torch through the real CLI (a fresh process: OpenMP's wait policy is set before torch loads),
    JAX in this process (no second interpreter and compile)."""
    tb, runs = tmp_path / "tb", {}
    proc = run_cli(
        *("train", "mnist1d-mlp", "--framework", "torch", "--epochs", "1", "--batch-size", "100", "--no-progress"),
        *("--json", "--out", str(tmp_path / "torch"), "--tensorboard", str(tb)),
        env={"OMP_WAIT_POLICY": None},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs["torch"] = json.loads(proc.stdout)
    config = RunConfig("mnist1d-mlp", "jax", epochs=1, batch_size=100, progress=False, tensorboard=str(tb))
    runs["jax"] = train_and_evaluate(config, tmp_path / "jax", dataset=mnist1d)
    assert sorted(p.name for p in tb.iterdir()) == [run_name("mnist1d-mlp", "jax"), run_name("mnist1d-mlp", "torch")]
    events = {fw: read_events(tb / run_name("mnist1d-mlp", fw)) for fw in runs}
    metrics = {fw: read_metrics(tmp_path / fw / "metrics.jsonl") for fw in runs}
    steps = 4000 // 100
    for fw in runs:
        assert set(events[fw]) == TAGS and set(metrics[fw]) == TAGS
        for tag in TAGS:  # the same points in both files (TensorBoard stores float32)
            assert [s for s, _ in events[fw][tag]] == [s for s, _ in metrics[fw][tag]]
            np.testing.assert_allclose([v for _, v in events[fw][tag]], [v for _, v in metrics[fw][tag]], rtol=1e-6)
        assert [s for s, _ in metrics[fw]["train/loss"]] == [1, 21, steps]  # the driver's loss syncs
        assert metrics[fw]["test/accuracy"] == [(steps, runs[fw]["test_accuracy"])]
        # The first point is the first step's loss (about ln 10 for 10 classes), later ones lower.
        losses = [v for _, v in metrics[fw]["train/loss"]]
        assert abs(losses[0] - np.log(10)) < 0.5 and losses[-1] < losses[0]
    # Both twins: the same steps and learning rates, so the runs overlay.
    for tag in ("train/loss", "train/learning_rate"):
        assert [s for s, _ in metrics["torch"][tag]] == [s for s, _ in metrics["jax"][tag]]
    assert metrics["torch"]["train/learning_rate"] == metrics["jax"]["train/learning_rate"]
    for fw, run in runs.items():  # run.json: how the run computed
        rt = run["runtime"]
        assert rt["usable_cores"] >= 1 and isinstance(rt["env"], dict)
        if fw == "torch":
            assert rt["threads"] == rt["thread_policy"]["threads"] == 1  # a 1 MFLOP step: one thread
            assert rt["thread_policy"]["adaptive"] is False  # one thread has nothing to step aside from
            assert rt["env"]["OMP_WAIT_POLICY"] == rt["thread_policy"]["omp_wait_policy"] == "PASSIVE"
        else:
            assert rt["backend"] == "cpu" and rt["cpu_devices"] >= 1 and "jax_num_cpu_devices" in rt["config"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent)
    if head.returncode == 0:  # run from a checkout: its commit is recorded
        assert runs["torch"]["git"]["commit"] == head.stdout.strip()
        assert isinstance(runs["torch"]["git"]["dirty"], bool)


def read_events_as_tensorboard_shows(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """The scalars TensorBoard shows from a run folder, as its event accumulator reads them
    (tensorboard/backend/event_processing/plugin_event_accumulator.py, for files of version 2, which
    tensorboardX writes): the event files in name order; the first SessionLog START of a run starts it, and
    each later one marks a restart, hiding every point seen so far at or after its step, in every tag."""
    from tensorboardX.proto import event_pb2

    shown: dict[str, list[tuple[int, float]]] = {}
    started = False
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
            pos += 12 + length + 4
            if event.file_version:
                assert event.file_version == "brain.Event:2", event.file_version
            if event.session_log.status == event_pb2.SessionLog.START:
                if started:
                    shown = {tag: [(s, v) for s, v in points if s < event.step] for tag, points in shown.items()}
                started = True
            for value in event.summary.value:
                shown.setdefault(value.tag, []).append((event.step, value.simple_value))
    return shown


def test_tensorboard_with_resume_continues_the_run_from_its_checkpoint(tmp_path):
    """--tensorboard with --resume: a run interrupted after its checkpoint at step 20 had logged points past
    it (step 40). The resumed run logs into the same TensorBoard run, from step 21 on, and marks the restart:
    what TensorBoard shows is each step once, the resumed run's points after 20, as metrics.jsonl has them."""
    tb, out = tmp_path / "tb", tmp_path / "run"
    args = ("train", "mnist1d-mlp", "--framework", "torch", "--epochs", "1", "--batch-size", "100")
    args += ("--checkpoint-every", "20", "--keep", "2", "--tensorboard", str(tb), "--out", str(out), "--no-progress")
    assert cli_in_process(*args).returncode == 0
    first = read_events(tb / run_name("mnist1d-mlp", "torch"))
    # As if killed just before the end: the checkpoint of step 20 is the newest, and no run.json or weights.
    shutil.copy(out / "checkpoint-step000000020.safetensors", out / "checkpoint.safetensors")
    (out / "run.json").unlink()
    (out / "weights.safetensors").unlink()
    # tensorboardX names an event file by the second it was opened in (and the host) and opens it with "wb":
    # a resume starts seconds after its run did, so wait for the next second (this run took less than one).
    (opened,) = (int(p.name.split(".")[3]) for p in (tb / run_name("mnist1d-mlp", "torch")).iterdir())
    while int(time.time()) <= opened:
        time.sleep(0.05)
    proc = cli_in_process(*args, "--resume")
    assert proc.returncode == 0, proc.stderr
    run_dir = tb / run_name("mnist1d-mlp", "torch")
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 2  # one run, a second file for the resumed part
    shown, metrics = read_events_as_tensorboard_shows(run_dir), read_metrics(out / "metrics.jsonl")
    assert set(shown) == set(metrics) == TAGS
    for tag in TAGS:
        assert [s for s, _ in shown[tag]] == [s for s, _ in metrics[tag]], tag
        np.testing.assert_allclose([v for _, v in shown[tag]], [v for _, v in metrics[tag]], rtol=1e-6)
    assert [s for s, _ in metrics["train/loss"]] == [1, 20, 40] and [s for s, _ in first["train/loss"]] == [1, 20, 40]
    # the resumed steps are the interrupted run's: a resume is bit-identical, TensorBoard stores float32
    np.testing.assert_allclose([v for _, v in shown["train/loss"]], [v for _, v in first["train/loss"]], rtol=1e-6)


@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "constant"])
def test_logged_learning_rate_is_the_twins_own(schedule):
    """torch: the rate ``get_last_lr`` gives for a step; JAX: optax's schedule at that step's count."""
    from diptych.backends.jax.train import make_schedule
    from diptych.backends.torch.train import Trainer

    task, total = get_task("mnist1d-mlp").with_overrides(schedule=schedule, batch_size=8), 12
    observer = Observer("unused", task, "torch", total, enabled=False)
    trainer = Trainer(task, 0, total)
    x, y = random_batch(task, 8, np.random.default_rng(0))
    jax_lr = make_schedule(task.optimizer, total)
    for step in range(1, total + 1):
        (torch_lr,) = trainer.scheduler.get_last_lr()  # the rate this step will use
        assert observer.learning_rate(step) == pytest.approx(torch_lr, rel=1e-12)
        jax_at = float(jax_lr(step - 1) if callable(jax_lr) else jax_lr)  # optax: float32
        assert observer.learning_rate(step) == pytest.approx(jax_at, rel=1e-5, abs=1e-9)
        trainer.train_step(x, y)


def test_a_resumed_run_keeps_its_earlier_points_once(tmp_path):
    task = get_task("mnist1d-mlp")
    with Observer(tmp_path, task, "jax", 100) as obs:
        for step in (1, 21, 41):
            obs.on_losses(step, [1.0] * step, 10.0)
        obs.on_epoch(41, {"test_accuracy": 0.5, "correct": 5})
    with Observer(tmp_path, task, "jax", 100, start_step=21) as obs:  # the checkpoint was at step 21
        obs.on_losses(41, [2.0] * 20, 10.0)
    points = read_metrics(tmp_path / "metrics.jsonl")
    assert points["train/loss"] == [(1, 1.0), (21, 1.0), (41, 2.0)] and "test/accuracy" not in points


def test_missing_tensorboardx_is_one_line_naming_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # `import tensorboardX` raises ImportError
    proc = cli_in_process(
        "train", "mnist1d-mlp", "--framework", "torch", "--out", str(tmp_path / "r"), "--tensorboard", str(tmp_path)
    )
    assert_one_line_error(proc, "tensorboardX", "pip install 'diptych[tensorboard]'")
    assert not (tmp_path / "r").exists()  # refused before any work


def test_torch_threads_follow_the_work_in_a_step():
    from diptych.backends.torch.train import choose_threads
    from diptych.flops import train_flops

    def threads(name: str, cores: int = 8) -> int:
        task = get_task(name)
        return choose_threads(train_flops(task.model) * task.budget.batch_size, cores)[0]

    assert threads("mnist1d-mlp") == threads("mnist1d-cnn") == 1  # steps of 1-20 MFLOP
    assert threads("mnist-cnn", cores=1) == 1 and threads("mnist-cnn", cores=2) == 2  # 0.8 GFLOP: every core
    assert choose_threads(None, 2)[0] == 2  # a step of unknown size keeps every core


@pytest.mark.skipif(
    not Path("/proc/stat").exists() or usable_cores() < 2, reason="needs Linux's /proc/stat and 2 usable cores"
)
def test_torch_threads_step_aside_while_another_process_is_busy():
    """The governor reads the neighbours' load for real: beside one busy process, 2 threads on 2 cores
    become 1 (one thread never waits for a preempted partner). Any other load on the machine only pushes
    the same way; the way back, which a busy neighbour would block, is checked on injected readings below."""
    import torch

    from diptych.backends.torch.train import ThreadGovernor

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    gov = ThreadGovernor(2, interval=0.25)
    # Its own session, as another program's would be (the kernel's autogroups share the CPU per session).
    spinner = subprocess.Popen([sys.executable, "-S", "-c", "while True: pass"], start_new_session=True)
    try:
        deadline = time.monotonic() + 15
        while gov.threads != 1 and time.monotonic() < deadline:
            time.sleep(0.3)  # the load is measured over the time between two ticks (one interval, not stale)
            gov.tick()
        assert gov.threads == 1 == torch.get_num_threads() and gov.switches == 1
    finally:
        spinner.kill()
        spinner.wait()
        torch.set_num_threads(before)


def test_torch_thread_governor_decides_from_the_load_it_reads(monkeypatch):
    """The governor's decision on readings of the neighbours' load given to it (cores busy with other
    processes), on 4 cores with at most 4 threads: threads = clip(round(4 - others), 1, 4), once per interval;
    a reading it cannot take (None) or one after a pause in training (stale) changes nothing."""
    import torch

    from diptych.backends.torch import train as tt

    class Clock:  # the governor's time.monotonic, moved by the test
        now = 100.0

        @classmethod
        def monotonic(cls):
            return cls.now

    class Meter:  # OtherLoad's interface: the cores other processes kept busy since the last reading
        def __init__(self):
            self.readings = []

        def read(self):
            return self.readings.pop(0)

    monkeypatch.setattr(tt, "time", Clock)
    monkeypatch.setattr(tt, "usable_cores", lambda: 4)
    monkeypatch.setattr(tt, "OtherLoad", Meter)
    before = torch.get_num_threads()
    try:
        gov = tt.ThreadGovernor(4, interval=1.0)
        meter = gov._load

        def tick(others, after=1.0):
            Clock.now += after
            meter.readings.append(others)
            gov.tick()
            return gov.threads

        assert tick(0.0) == 4 and gov.switches == 0  # a quiet machine: every thread
        assert tick(1.0) == 3 == torch.get_num_threads()  # one busy neighbour: one core fewer
        assert tick(2.6) == 1  # round(1.4): one thread
        assert tick(3.9) == 1  # never fewer than one
        assert tick(None) == 1  # no reading: as it was
        assert tick(0.0, after=5.0) == 1  # stale (no tick for 4 intervals): only starts a fresh window
        assert tick(0.4) == 4 and gov.switches == 3  # round(3.6): back to every thread
        Clock.now += 0.5  # within the interval: no reading taken at all
        gov.tick()
        assert meter.readings == [] and gov.threads == 4
        assert tick(1.6) == 2  # round(2.4)
    finally:
        torch.set_num_threads(before)


def test_the_git_record_is_left_out_without_git(monkeypatch):
    from diptych.records import source_revision

    monkeypatch.setenv("PATH", "")  # no git to run: no record, and no failure
    assert source_revision() is None


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full (every write: no space left)")
def test_a_full_disk_stops_the_log_not_the_run(tmp_path, capsys):
    obs = Observer(tmp_path, get_task("mnist1d-mlp"), "torch", 100)
    obs._file.close()
    obs._file = open("/dev/full", "w")  # the disk fills up after the run started
    obs.on_losses(1, [2.0], 10.0)
    obs.on_losses(21, [1.0] * 20, 10.0)  # no second warning, no exception
    obs.close()
    err = capsys.readouterr().err
    assert err.count("warning") == 1 and "/dev/full" in err and "no more points" in err

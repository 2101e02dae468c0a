"""Resume after a real interruption: SIGKILL a training process mid-epoch, after a step-level
checkpoint, resume it, and get the very bytes of a run that was never interrupted, in both twins.
A language model also carries its recurrent state across the checkpoint."""

import json
import shutil
import signal

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file

from conftest import assert_one_line_error, cli_in_process, run_cli_isolated
from process_helpers import Started

# mnist1d-mlp at batch 16: 250 steps an epoch; a checkpoint every 25 steps.
ARGS = ["mnist1d-mlp", "--epochs", "3", "--checkpoint-every", "25", "--no-progress"]


def _position(path) -> tuple[int, int]:
    """``(global step, step within the epoch)`` of the checkpoint at ``path``; (0, 0) before there is one."""
    try:
        with safe_open(path, framework="numpy") as f:
            meta = f.metadata()
        return int(meta["global_step"]), int(meta["step"])
    except Exception:  # not written yet
        return 0, 0


def kill_mid_epoch(args: list[str], out, after_step: int, framework: str, timeout: float = 300) -> int:
    """Run ``diptych train ARGS`` until it is about to write its first mid-epoch checkpoint at or after
    ``after_step`` (it holds there: tests/hold), SIGKILL it, and return the global step of the checkpoint
    it left, the one before: the steps trained since are lost, as in a real kill."""
    marker = out.parent / f"{out.name}.held"
    cmd = ["train", *args, "--framework", framework, "--out", str(out)]
    with Started(cmd, hold=(marker, after_step)) as run:
        run.wait_for(marker, timeout)
        run.proc.send_signal(signal.SIGKILL)
        assert run.wait(60) == -signal.SIGKILL
    held = int(marker.read_text())
    assert _position(out / "checkpoint.safetensors")[0] == held  # the kill left the checkpoint as it was
    return held


def _contents(path) -> tuple[dict, dict]:
    with safe_open(path, framework="numpy") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        return f.metadata(), {k: (v.dtype, v.shape, v.tobytes()) for k, v in tensors.items()}


@pytest.mark.full
@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_kill_mid_epoch_and_resume_is_bit_identical(tmp_path, framework):
    full = run_cli_isolated("train", *ARGS, "--framework", framework, "--out", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr

    out = tmp_path / "killed"
    killed_at = kill_mid_epoch(ARGS, out, after_step=325, framework=framework)  # 25 steps after step 300
    assert killed_at == 300 and not (out / "run.json").exists()  # epoch 2, 50 steps in

    resumed = run_cli_isolated("train", *ARGS, "--framework", framework, "--resume", "--out", str(out))
    assert resumed.returncode == 0, resumed.stderr
    # Byte for byte: every tensor, and the same metadata (whose order in the header safetensors varies).
    assert _contents(out / "weights.safetensors") == _contents(tmp_path / "full" / "weights.safetensors")
    run, full_run = (json.loads((d / "run.json").read_text()) for d in (out, tmp_path / "full"))
    assert [e["train_loss"] for e in run["epochs"]] == [e["train_loss"] for e in full_run["epochs"]]
    assert run["test_accuracy"] == full_run["test_accuracy"]


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_a_language_model_resumes_mid_epoch_with_its_carried_state(tmp_path, framework):
    """Every kept checkpoint is a place to resume from: a chars-lstm run resumed from one taken
    mid-epoch (its TBPTT state saved with it) ends with the uninterrupted run's weights."""
    from diptych import RunConfig, train_and_evaluate
    from diptych.checkpoint import load

    text = tmp_path / "corpus.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 470, encoding="utf-8")
    config = RunConfig(
        "chars-lstm", framework, epochs=1, batch_size=4, checkpoint_every=15, keep=4, progress=False, text=str(text)
    )
    full = tmp_path / "full"
    train_and_evaluate(config, full)
    kept = sorted(full.glob("checkpoint-step*.safetensors"))
    assert len(kept) == 3  # --keep 4: the newest and three older ones
    mid = next(k for k in kept if 0 < _position(k)[1])  # taken mid-epoch: it carries the LSTM's (h, c)
    _, _, meta = load(mid, "chars-lstm")
    assert set(meta["carry"]) == {"h", "c"} and meta["carry"]["h"].shape == (1, 4, 256)

    again = tmp_path / "again"
    again.mkdir()
    shutil.copy(mid, again / "checkpoint.safetensors")
    train_and_evaluate(RunConfig("chars-lstm", framework, resume=True, progress=False, text=str(text)), again)
    a, b = load_file(full / "weights.safetensors"), load_file(again / "weights.safetensors")
    assert all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--checkpoint-every", "-1"], "--checkpoint-every -1: give a number of steps >= 0"),
        (["--keep", "0"], "--keep 0: keep at least 1 checkpoint"),
    ],
)
def test_bad_checkpoint_settings_are_one_line(tmp_path, args, message):
    r = cli_in_process("train", "mnist1d-mlp", "--framework", "torch", *args, "--out", str(tmp_path), "--no-progress")
    assert_one_line_error(r, message)
    assert not (tmp_path / "checkpoint.safetensors").exists()


def test_a_finished_checkpoint_without_weights_resumes_to_completion(tmp_path, mnist1d):
    """A kill between the last checkpoint and the final files: --resume writes them instead of refusing."""
    from diptych import RunConfig, train_and_evaluate
    from diptych.checkpoint import load

    out = tmp_path / "run"
    train_and_evaluate(RunConfig("mnist1d-mlp", "torch", epochs=2, progress=False), out, dataset=mnist1d)
    (out / "weights.safetensors").unlink()
    (out / "run.json").unlink()
    run = train_and_evaluate(RunConfig("mnist1d-mlp", "torch", resume=True, progress=False), out, dataset=mnist1d)
    assert [e["epoch"] for e in run["epochs"]] == [1, 2] and (out / "run.json").exists()
    params, _, _ = load(out / "checkpoint.safetensors", "mnist1d-mlp")
    weights = load_file(out / "weights.safetensors")
    assert set(weights) == set(params) and all(np.array_equal(weights[k], params[k]) for k in params)
    # With everything written, the run is complete: resumed again, it trains nothing and gives its record.
    written = (out / "weights.safetensors").read_bytes(), (out / "run.json").read_text()
    again = train_and_evaluate(RunConfig("mnist1d-mlp", "torch", resume=True, progress=False), out, dataset=mnist1d)
    assert again["already_complete"] and again["epochs"] == run["epochs"]
    assert ((out / "weights.safetensors").read_bytes(), (out / "run.json").read_text()) == written


def test_resuming_a_finished_run_is_idempotent(tmp_path):
    """A requeued job that already finished exits 0 and says so; more epochs continue it; a setting that would
    change a finished run is refused, naming it."""
    out = str(tmp_path / "run")
    args = ("train", "mnist1d-mlp", "--framework", "jax", "--epochs", "2", "--out", out, "--no-progress")
    first = cli_in_process(*args, "--json")
    assert first.returncode == 0, first.stderr
    again = cli_in_process(*args, "--resume")
    assert again.returncode == 0 and "already complete after 2 epochs" in again.stdout, again
    assert json.loads(first.stdout) == json.loads((tmp_path / "run" / "run.json").read_text())
    one = ("train", "mnist1d-mlp", "--framework", "jax", "--epochs", "1", "--out", out, "--no-progress")
    assert_one_line_error(cli_in_process(*one, "--resume"), "already finished 2 epochs")
    assert_one_line_error(cli_in_process(*args, "--lr", "0.1", "--resume"), "--lr 0.1", "is complete")
    more = cli_in_process(*args[:4], "--epochs", "3", "--out", out, "--resume", "--json")
    assert more.returncode == 0 and [e["epoch"] for e in json.loads(more.stdout)["epochs"]] == [1, 2, 3], more


def test_init_from_under_resume_is_refused(tmp_path):
    out = tmp_path / "run"
    assert (
        cli_in_process(
            "train", "mnist1d-mlp", "--framework", "torch", "--epochs", "1", "--out", str(out), "--no-progress"
        ).returncode
        == 0
    )
    assert_one_line_error(
        cli_in_process(
            "train",
            "mnist1d-mlp",
            "--framework",
            "torch",
            "--epochs",
            "2",
            "--resume",
            "--init-from",
            str(out / "weights.safetensors"),
            "--out",
            str(out),
        ),
        "--init-from and --resume conflict",
    )


def test_by_default_checkpoints_follow_the_clock_at_loss_syncs(tmp_path, mnist1d, monkeypatch):
    """Without --checkpoint-every, a checkpoint is due once CHECKPOINT_SECONDS of training have passed,
    at the next loss sync (every SYNC_EVERY steps); 0 s makes every sync within the epoch due."""
    from diptych import RunConfig, driver, runstate, train_and_evaluate

    monkeypatch.setattr(runstate, "CHECKPOINT_SECONDS", 0.0)
    train_and_evaluate(RunConfig("mnist1d-mlp", "torch", epochs=1, keep=3, progress=False), tmp_path, dataset=mnist1d)
    kept = sorted(int(p.stem.removeprefix("checkpoint-step")) for p in tmp_path.glob("checkpoint-step*.safetensors"))
    steps = len(mnist1d.y_train) // 16  # the final (epoch-end) checkpoint is the newest
    last_syncs = list(range(1, steps, driver.SYNC_EVERY))[-2:]  # syncs: after the first step, then every 20
    assert kept == last_syncs and _position(tmp_path / "checkpoint.safetensors") == (steps, 0)

    monkeypatch.setattr(runstate, "CHECKPOINT_SECONDS", 1e9)  # never due: only the epoch end's
    train_and_evaluate(
        RunConfig("mnist1d-mlp", "torch", epochs=1, keep=3, progress=False), tmp_path / "b", dataset=mnist1d
    )
    assert list((tmp_path / "b").glob("checkpoint-step*")) == []


def test_a_fractional_budget_trains_part_of_the_last_epoch(tmp_path):
    """--epochs 1.5: one whole epoch, then the first half of the second's batches; the schedule spans
    exactly those steps (the learning rate ends at zero)."""
    from diptych import RunConfig, train_and_evaluate

    run = train_and_evaluate(RunConfig("mnist1d-mlp", "torch", epochs=1.5, progress=False), tmp_path)
    steps = 4000 // 16  # mnist1d-mlp: 4,000 training samples, batch 16
    assert [e["epoch"] for e in run["epochs"]] == [1, 2] and run["config"]["epochs"] == 1.5
    assert run["loss_curve"][-1][0] == steps + steps // 2
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    lrs = [p["train/learning_rate"] for p in lines if "train/learning_rate" in p]
    assert lrs and lrs[-1] < 1e-3 * max(lrs)
    tests = [p["step"] for p in lines if "test/accuracy" in p]
    assert tests == [steps, steps + steps // 2]  # each epoch's score at the step it ended


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    """A run of 0.05 epochs of mnist1d-mlp (12 steps), with its checkpoint: ``(folder, its config)``."""
    out = tmp_path_factory.mktemp("short") / "run"
    proc = cli_in_process(
        "train", "mnist1d-mlp", "--framework", "torch", "--epochs", "0.05", "--out", str(out), "--no-progress"
    )
    assert proc.returncode == 0, proc.stderr
    return out, json.loads((out / "run.json").read_text())["config"]


@pytest.mark.parametrize(
    "option, key, other",
    [
        ("--batch-size", "batch_size", "32"),
        ("--optimizer", "optimizer", "sgd"),
        ("--schedule", "schedule", "cosine"),
        ("--seed", "seed", "1"),
        ("--split", "split", "speaker:anna"),
    ],
)
def test_resume_refuses_a_changed_setting(short_run, option, key, other):
    """A resumed run keeps the settings that decide its batches and its optimizer's state: changing one is
    one line (exit 2) naming the option and what the run used, and the checkpoint is left as it was."""
    out, config = short_run
    assert str(config[key]) != other
    before = (out / "checkpoint.safetensors").read_bytes()
    proc = cli_in_process(
        "train", "mnist1d-mlp", "--framework", "torch", "--resume", "--epochs", "2", option, other, "--out", str(out)
    )
    assert_one_line_error(proc, f"cannot change {option} when resuming (the run used {config[key]})")
    assert (out / "checkpoint.safetensors").read_bytes() == before


def test_resume_accepts_the_settings_it_used(short_run, tmp_path):
    """Naming the very settings the run used is no change: the run continues (the refusals above are about
    a change, not about the options being given)."""
    out, config = short_run
    again = tmp_path / "run"
    shutil.copytree(out, again)
    same = [f"--{k.replace('_', '-')}={config[k]}" for k in ("batch_size", "optimizer", "schedule", "seed")]
    proc = cli_in_process(
        "train", "mnist1d-mlp", "--framework", "torch", "--resume", "--epochs", "2", *same, "--out", str(again)
    )
    assert proc.returncode == 0, proc.stderr
    run = json.loads((again / "run.json").read_text())
    assert [e["epoch"] for e in run["epochs"]] == [1, 2] and run["config"]["epochs"] == 2


@pytest.mark.full  # a real process and a real signal: seconds each
@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_ctrl_c_exits_130_with_the_last_checkpoint_intact(tmp_path, framework):
    """SIGINT (Ctrl-C) to a training run, once its first checkpoint is written (an event of the run, not a
    clock; the budget is far longer than the test): exit 130, one line, and the newest checkpoint loads
    and resumes."""
    from diptych import checkpoint

    out = tmp_path / "run"
    args = ["train", "mnist1d-mlp", "--framework", framework, "--epochs", "1000", "--checkpoint-every", "25"]
    with Started([*args, "--no-progress", "--out", str(out)]) as run:
        run.wait_for(out / "checkpoint.safetensors", timeout=120)
        run.proc.send_signal(signal.SIGINT)
        code = run.wait(60)
        stderr = run.stderr()
    assert code == 130, stderr[-2000:]
    assert stderr.strip().splitlines()[-1] == "diptych: interrupted" and "Traceback" not in stderr
    _, _, meta = checkpoint.load(out / "checkpoint.safetensors", "mnist1d-mlp")  # intact: every check passes
    assert meta["global_step"] >= 25 and meta["global_step"] % 25 == 0 and not (out / "run.json").exists()
    end = meta["epoch"] + 1  # the epoch it was in: the resumed run finishes it
    resumed = cli_in_process(
        "train", "mnist1d-mlp", "--framework", framework, "--resume", "--epochs", str(end), "--out", str(out)
    )
    assert resumed.returncode == 0, resumed.stderr
    assert _position(out / "checkpoint.safetensors") == (250 * end, 0)

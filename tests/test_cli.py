"""The CLI's happy paths: list, train/eval with --json, compare's table, plot and records."""

import contextlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from conftest import run_cli


def test_list_shows_every_task():
    proc = run_cli("list", "--json")
    assert proc.returncode == 0
    rows = {r["task"]: r for r in json.loads(proc.stdout)}
    assert {"mnist-mlp", "mnist-cnn", "fashion-mnist-mlp", "fashion-mnist-cnn", "mnist1d-mlp", "mnist1d-cnn"} <= set(
        rows
    )
    assert rows["mnist-cnn"]["params"] == 421_642 and rows["mnist-cnn"]["target_accuracy"] == 0.99
    table = run_cli("list")
    assert table.returncode == 0 and "mnist1d-cnn" in table.stdout and "421,642" in table.stdout
    # references a user can look up: no tracker numbers; the speech tasks state both bars
    cited = [(name, r["reference"]) for name, r in rows.items() if re.search(r"#\d|\bissue", r["reference"], re.I)]
    assert not cited, cited
    assert "official split" in rows["fsdd-cnn"]["target"] and "unheard speaker" in rows["fsdd-cnn"]["target"]


def test_neutral_core_imports_no_framework():
    import subprocess
    import sys

    import diptych

    src = Path(diptych.__file__).parent
    # By design, two places import a framework: the cookbook's standalone programs, and the porting tool's
    # private modules (port/_*.py) that handle, trace and translate a user's torch and NNX models, with
    # nnx_layers (`import diptych.port` itself loads neither).

    def standalone(rel: Path) -> bool:
        return (
            rel.parts[0] == "cookbook"
            and rel.name != "__init__.py"
            or rel.parts[0] == "port"
            and (rel.stem == "nnx_layers" or (rel.stem.startswith("_") and rel.name != "__init__.py"))
        )

    names = sorted(
        "diptych." + ".".join(p.relative_to(src).with_suffix("").parts).removesuffix(".__init__")
        for p in src.rglob("*.py")
        if not {"torch", "jax"} & set(p.relative_to(src).parts)
        and p.name != "__main__.py"
        and not standalone(p.relative_to(src))
    )
    assert {"diptych.driver", "diptych.backends", "diptych.port", "diptych.commands.port"} <= set(names)
    code = (
        f"import sys, importlib\nfor m in {names!r}: importlib.import_module(m)\n"
        "bad = [m for m in ('torch', 'jax', 'flax', 'optax') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("framework,other", [("torch", "jax"), ("jax", "torch")])
def test_train_json_then_eval_in_other_twin(tmp_path, framework, other):
    out = tmp_path / framework
    proc = run_cli("train", "mnist1d-mlp", "--framework", framework, "--epochs", "3", "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    run = json.loads(proc.stdout)
    for key in (
        "task",
        "framework",
        "versions",
        "hardware",
        "config",
        "epochs",
        "test_accuracy",
        "compile_seconds",
        "samples_per_second",
        "wall_seconds",
        "peak_rss_mb",
    ):
        assert key in run, key
    assert run == json.loads((out / "run.json").read_text())
    assert [e["epoch"] for e in run["epochs"]] == [1, 2, 3]
    walls = [e["wall_seconds"] for e in run["epochs"]]
    assert walls == sorted(walls) and walls[0] >= run["compile_seconds"]
    assert run["framework"] == framework and framework in run["versions"]
    assert 0.3 < run["test_accuracy"] <= 1  # 3 epochs of mnist1d-mlp are far above chance (10%)

    ev = run_cli("eval", "mnist1d-mlp", "--framework", other, "--weights", str(out / "weights.safetensors"), "--json")
    assert ev.returncode == 0, ev.stderr
    result = json.loads(ev.stdout)
    assert result["total"] == 1000 and result["correct"] == round(result["test_accuracy"] * 1000)
    assert abs(result["test_accuracy"] - run["test_accuracy"]) <= 0.001  # same weights, other framework


def test_compare_json_table_and_plot(tmp_path):
    """compare --json prints one JSON object, each twin's run.json and the plot as compare.json holds them;
    without --json the same runs are the table (printed here from the record, as the command prints it)."""
    from diptych.commands.compare import print_table

    proc = run_cli("compare", "mnist1d-mlp", "--epochs", "1", "--out", str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.strip().splitlines()  # nothing but the object
    summary = json.loads(line)
    assert summary == json.loads((tmp_path / "compare.json").read_text())
    runs = {fw: json.loads((tmp_path / fw / "run.json").read_text()) for fw in ("torch", "jax")}
    assert summary["task"] == "mnist1d-mlp" and summary["runs"] == runs
    assert Path(summary["plot"]) == tmp_path / "accuracy_vs_time.png"
    png = (tmp_path / "accuracy_vs_time.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    # identical batches: same seed, same config, both frameworks
    assert runs["torch"]["config"] == runs["jax"]["config"] and runs["torch"]["config"]["epochs"] == 1
    w_t, w_j = (
        load_file(tmp_path / "torch" / "weights.safetensors"),
        load_file(tmp_path / "jax" / "weights.safetensors"),
    )
    assert set(w_t) == set(w_j) and all(w_t[k].shape == w_j[k].shape for k in w_t)
    assert not np.array_equal(w_t["fc1.weight"], w_j["fc1.weight"])  # each twin initialised itself
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        print_table(runs, "mnist1d-mlp")
    for needle in ("torch", "jax", "test accuracy", "steady samples/s", "peak memory", "compile"):
        assert needle in out.getvalue()


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_bf16_precision_trains_with_float32_master_weights(tmp_path, framework):
    proc = run_cli(
        "train",
        "mnist1d-cnn",
        "--framework",
        framework,
        "--precision",
        "bf16",
        "--epochs",
        "6",
        "--out",
        str(tmp_path),
        "--json",
        "--no-progress",
    )
    assert proc.returncode == 0, proc.stderr
    run = json.loads(proc.stdout)
    assert run["config"]["precision"] == "bf16"
    assert run["epochs"][-1]["train_loss"] < 0.5 * run["epochs"][0]["train_loss"] and run["test_accuracy"] > 0.6
    weights = load_file(tmp_path / "weights.safetensors")
    assert all(w.dtype == np.float32 for w in weights.values())  # master weights stay float32


@pytest.mark.full  # inductor compiles C++ for the step: ~20 s on a cold cache
def test_compile_trains_the_same_steps_as_eager(tmp_path):
    """--compile (torch.compile) in a real short run: recorded, and the same losses and accuracy as eager
    mode on the same batches (the compiled graph computes the same step, to float32 rounding)."""
    from conftest import cli_in_process

    args = ("train", "mnist1d-mlp", "--framework", "torch", "--epochs", "0.1", "--json", "--no-progress")
    compiled = run_cli(*args, "--compile", "--out", str(tmp_path / "compiled"))
    assert compiled.returncode == 0, compiled.stderr[-2000:]
    eager = cli_in_process(*args, "--out", str(tmp_path / "eager"))
    assert eager.returncode == 0, eager.stderr
    run, ref = json.loads(compiled.stdout), json.loads(eager.stdout)
    assert run["config"]["compile"] is True and ref["config"]["compile"] is False
    assert [s for s, _ in run["loss_curve"]] == [s for s, _ in ref["loss_curve"]]
    np.testing.assert_allclose([v for _, v in run["loss_curve"]], [v for _, v in ref["loss_curve"]], rtol=1e-5)
    assert run["test_accuracy"] == pytest.approx(ref["test_accuracy"], abs=0.002)  # a near-tie may flip


LATE_CTRL_C = """
import atexit, gc, os, signal, sys, time
from diptych import cli

def callback(phase, info):  # as JAX's _xla_gc_callback: a gc callback the Ctrl-C lands in
    if not fired:
        fired.append(1)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.5)

fired = []
atexit.register(lambda: (gc.callbacks.append(callback), gc.collect()))  # after the command: the exit's gc
sys.argv = ["diptych", "list"]
cli.run()
"""


def test_a_ctrl_c_after_the_command_finished_prints_no_traceback():
    """A Ctrl-C that lands in the teardown after a finished run (JAX's gc callback) printed a KeyboardInterrupt
    traceback; now the process ends at once with exit code 130, the command's output intact."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, "-c", LATE_CTRL_C],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert "mnist1d-cnn" in proc.stdout, proc.stderr  # the command ran and its output reached the pipe
    assert "Traceback" not in proc.stderr and "KeyboardInterrupt" not in proc.stderr, proc.stderr
    assert proc.returncode == 130, (proc.returncode, proc.stderr)

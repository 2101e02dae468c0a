"""Benchmark machinery: FLOP counts by hand, interleaving, report contents, `diptych report`.
Correctness only: no timing is asserted anywhere."""

import base64
import io
import json
import subprocess
import sys
from html.parser import HTMLParser

import pytest

from conftest import run_cli
from diptych.bench.contestants import interleaved
from diptych.bench.report import write_report
from diptych.bench.summary import summarize
from diptych.flops import forward_flops, layers, train_flops
from diptych.tasks import TASKS, fit_vocab


def test_flops_by_hand():
    # mnist-cnn: conv1 1->32 3x3 on 28x28, conv2 32->64 3x3 on 14x14, fc 3136->128, fc 128->10
    conv1 = 2 * (1 * 3 * 3) * 32 * 28 * 28
    conv2 = 2 * (32 * 3 * 3) * 64 * 14 * 14
    fcs = 2 * (64 * 7 * 7 * 128 + 128 * 10)
    assert forward_flops(TASKS["mnist-cnn"].model) == conv1 + conv2 + fcs == 8_482_304
    assert forward_flops(TASKS["mnist-mlp"].model) == 2 * (784 * 256 + 256 * 128 + 128 * 10)
    assert forward_flops(TASKS["mnist1d-mlp"].model) == 2 * (40 * 100 + 100 * 100 + 100 * 10)
    # mnist1d-cnn: lengths 40 -> 19 -> 10 -> 5 (k5 s2 p1, k3 s2 p1, k3 s2 p1), 25 channels, fc 125 -> 10
    assert forward_flops(TASKS["mnist1d-cnn"].model) == 2 * (
        1 * 5 * 25 * 19 + 25 * 3 * 25 * 10 + 25 * 3 * 25 * 5 + 125 * 10
    )
    # mnist1d-gru: 40 steps of (x @ W_ih: 1 -> 3*128, h @ W_hh: 128 -> 3*128), then fc 128 -> 10
    assert forward_flops(TASKS["mnist1d-gru"].model) == 40 * 2 * 3 * 128 * (1 + 128) + 2 * 128 * 10
    # chars-lstm with 100 characters: per character 4 gates over (64 + 256) inputs, then 256 -> 100
    lm = fit_vocab(TASKS["chars-lstm"], 100).model
    assert forward_flops(lm) == 64 * (2 * 4 * 256 * (64 + 256) + 2 * 256 * 100)
    for task in TASKS.values():
        assert train_flops(task.model) == 3 * forward_flops(task.model)


def test_layers_hold_every_counted_flop():
    """The layers the bench times alone for its MFU ceiling: every conv and dense layer, with the shapes it
    sees, and together all the FLOPs that MFU counts; only the first takes no input gradient."""
    cnn = layers(TASKS["mnist-cnn"].model)
    assert [(layer.name, layer.in_shape, layer.weight) for layer in cnn] == [
        ("conv1", (1, 28, 28), (32, 1, 3, 3)),
        ("conv2", (32, 14, 14), (64, 32, 3, 3)),
        ("fc1", (3136,), (128, 3136)),
        ("fc2", (128,), (10, 128)),
    ]
    assert [layer.in_shape for layer in layers(TASKS["mnist1d-cnn"].model)] == [(1, 40), (25, 19), (25, 10), (125,)]
    for task in TASKS.values():
        ls = layers(task.model)
        if task.model.kind in ("mlp", "cnn"):
            assert sum(layer.flops for layer in ls) == forward_flops(task.model), task.name
            assert [layer.input_grad for layer in ls] == [False] + [True] * (len(ls) - 1)
        else:
            assert ls == [], task.name


def test_interleaving_order():
    assert interleaved(["torch", "jax", "seed-baseline"], 2) == [
        (0, "torch"),
        (0, "jax"),
        (0, "seed-baseline"),
        (1, "torch"),
        (1, "jax"),
        (1, "seed-baseline"),
    ]


def _burst(fw, sps, peak=200.0):
    return {
        "framework": fw,
        "compile_seconds": 0.5,
        "train_samples_per_second": sps,
        "eval_samples_per_second": 10 * sps,
        "peak_rss_mb": 300.0,
        "matmul_gflops": peak,
    }


def _run(fw, accs, walls):
    return {
        "task": "mnist-cnn",
        "framework": fw,
        "test_accuracy": accs[-1],
        "peak_rss_mb": 500.0,
        "wall_seconds": walls[-1],
        "compile_seconds": 0.5,
        "samples_per_second": 1000.0,
        "epochs": [
            {"epoch": i + 1, "test_accuracy": a, "wall_seconds": w, "train_loss": 0.1}
            for i, (a, w) in enumerate(zip(accs, walls))
        ],
        "loss_curve": [[20, 1.0], [40, 0.5], [60, 0.2]],
    }


@pytest.fixture
def result():
    bursts = {
        "torch": [_burst("torch", s) for s in (3000, 3600, 3300)],
        "jax": [_burst("jax", s, peak=180.0) for s in (1800, 2000, 1900)],
        "seed-baseline": [_burst("seed-baseline", s) for s in (2400, 2600, 2500)],
    }
    runs = {
        "torch": _run("torch", [0.985, 0.991, 0.992], [20, 39, 57]),
        "jax": _run("jax", [0.984, 0.989, 0.9915], [34, 66, 98]),
        "seed-baseline": _run("seed-baseline", [0.981, 0.9898, 0.9918], [26, 50, 77]),
    }
    return summarize("mnist-cnn", bursts, runs)


def test_summary_medians_mfu_and_ratios(result):
    torch_row = result["contestants"]["torch"]
    assert torch_row["train_sps_median"] == 3300 and (torch_row["train_sps_min"], torch_row["train_sps_max"]) == (
        3000,
        3600,
    )
    assert torch_row["time_to_target_seconds"] == 39 and torch_row["time_to_target_epochs"] == 2
    assert result["matmul_peak_gflops"] == 200.0
    assert torch_row["mfu"] == pytest.approx(3300 * 3 * 8_482_304 / 1e9 / 200.0)
    r = result["ratios"]
    assert r["torch_time_to_target_speedup_vs_baseline"] == pytest.approx(77 / 39)
    assert r["jax_time_to_target_speedup_vs_baseline"] == pytest.approx(77 / 98)
    assert r["slower_twin_throughput_vs_faster"] == pytest.approx(1900 / 3300)


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs, self.cells = [], []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.srcs.append(dict(attrs)["src"])

    def handle_data(self, data):
        self.cells.append(data)


def test_report_contents(result, tmp_path):
    import matplotlib.image

    md, page = write_report(result, tmp_path)
    parser = _Images()
    parser.feed(page.read_text())
    assert len(parser.srcs) == 3  # accuracy vs time, loss vs step, throughput bars
    for src in parser.srcs:
        assert src.startswith("data:image/png;base64,")  # self-contained: nothing to fetch
        img = matplotlib.image.imread(io.BytesIO(base64.b64decode(src.split(",", 1)[1])), format="png")
        assert img.shape[0] > 100 and img.shape[1] > 100
    text = " ".join(parser.cells)
    for needle in ("torch", "jax", "seed-baseline", "3,300", "MFU", "time to target", "matmul peak"):
        assert needle in text, needle
    report_md = md.read_text()
    assert "| torch | 3,300 | 3,000-3,600 |" in report_md
    for name in ("accuracy_vs_time", "loss_vs_step", "throughput"):
        assert f"({name}.png)" in report_md and (tmp_path / f"{name}.png").stat().st_size > 1000


def test_report_command_on_saved_runs(tmp_path):
    for fw in ("torch", "jax"):
        proc = run_cli(
            "train", "mnist1d-mlp", "--framework", fw, "--epochs", "2", "--out", str(tmp_path / fw), "--no-progress"
        )
        assert proc.returncode == 0, proc.stderr
    proc = run_cli("report", str(tmp_path / "torch"), str(tmp_path / "jax"), "--out", str(tmp_path / "rep"))
    assert proc.returncode == 0, proc.stderr
    assert "torch" in proc.stdout and "jax" in proc.stdout
    page = (tmp_path / "rep" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3
    bad = run_cli("report", str(tmp_path / "nothing-here"))
    assert bad.returncode == 2 and "does not exist" in bad.stderr


def test_bench_runs_interleaved_bursts_end_to_end(tmp_path):
    """Bursts in both twins; --profile: a trace per twin in OUT/profile/ (first round only) and the
    side-by-side top-operations table in the report."""
    proc = run_cli(
        "bench", "mnist1d-mlp", "--repeats", "2", "--burst", "0.2", "--no-train", "--profile", "--out", str(tmp_path)
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "bench.json").read_text())
    assert [len(result["bursts"][fw]) for fw in ("torch", "jax")] == [2, 2]
    assert all(
        b["train_samples_per_second"] > 0 and b["matmul_gflops"] > 0 for bs in result["bursts"].values() for b in bs
    )
    assert (tmp_path / "report.html").exists() and "slower twin throughput vs faster" in proc.stdout
    assert (tmp_path / "profile" / "torch" / "torch.pt.trace.json").stat().st_size > 1000
    assert list((tmp_path / "profile" / "jax" / "plugins" / "profile").glob("*/*.trace.json.gz"))
    assert [sum("profile" in b for b in result["bursts"][fw]) for fw in ("torch", "jax")] == [1, 1]
    report = (tmp_path / "report.md").read_text()
    assert (
        "## Where the time goes" in report and "| # | torch op | ms/step | share | jax op | ms/step | share |" in report
    )
    assert "top operations of one training step" in proc.stdout
    # the MFU ceiling: each layer's forward + backward alone, at the step's batch, in each twin
    for fw in ("torch", "jax"):
        kernels = next(b["profile"]["kernels"] for b in result["bursts"][fw] if "profile" in b)
        assert [k["name"] for k in kernels["layers"]] == ["fc1", "fc2", "fc3"] and kernels["batch"] == TASKS[
            "mnist1d-mlp"
        ].budget.batch_size
        assert all(k["ms"] > 0 and k["gflops"] > 0 for k in kernels["layers"])
        row = result["contestants"][fw]
        assert 0 <= row["outside_kernels"] < 1 and row["mfu_ceiling"] > 0
        assert row["kernel_ms"] == pytest.approx(sum(k["ms"] for k in kernels["layers"]), rel=1e-3)
    assert "#### The convs and dense layers alone: diptych recipe, fp32" in report
    assert "| layer | torch ms | torch GFLOP/s | jax ms | jax GFLOP/s |" in report
    assert "with nothing but these kernels" in report and "MFU ceiling" in report


def test_baseline_only_for_mnist_cnn():
    proc = run_cli("bench", "mnist1d-cnn", "--baseline")
    assert proc.returncode == 2 and "seed MNIST CNN recipe" in proc.stderr


def test_seed_baseline_trains_until_the_target_then_stops(tmp_path):
    """With --stop-at the baseline stops after the first epoch at that accuracy (here 50% on 2,000 images,
    reached in epoch 1 of at most 3); --eval-every evaluates between epochs, off the training clock."""
    from conftest import real_data_dir

    mnist = real_data_dir("mnist")
    cmd = [sys.executable, "-m", "diptych.cookbook.seed_baseline", "--data-dir", str(mnist), "--limit", "2000"]
    proc = subprocess.run(
        cmd + ["--epochs", "3", "--stop-at", "0.5", "--eval-every", "8", "--out", str(tmp_path), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    run = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(run["epochs"]) == 1 and run["test_accuracy"] >= 0.5 and run["reached_target"] is False  # 99% not reached
    # 2,000 images at batch 64: 32 steps, evaluated every 8 (99% not reached), off the training clock
    assert [p["step"] for p in run["evals"]] == [8, 16, 24, 32]
    assert run["train_clock_seconds"] + sum(p["eval_seconds"] for p in run["evals"]) <= run["wall_seconds"]
    assert run["config"]["normalize"] == "(0.5, 0.5)" and run["config"]["schedule"] == "constant"
    burst = subprocess.run(cmd + ["--burst", "0.3"], capture_output=True, text=True, timeout=300)
    assert burst.returncode == 0 and json.loads(burst.stdout)["train_samples_per_second"] > 0


def _clocked_run(fw, accs, clock, batch, epochs, evals_eval_s=0.5, n=60_000):
    """A run evaluated on a schedule: points every 100 steps with their training clock."""
    run = _run(fw, accs, [c + 5 for c in clock])
    run["config"] = {"batch_size": batch, "optimizer": "adam", "lr": 1e-3, "schedule": "constant", "epochs": epochs}
    run["dataset"] = {"train": n}
    run["evals"] = [
        {"step": 100 * (i + 1), "train_seconds": c, "eval_seconds": evals_eval_s, "test_accuracy": a}
        for i, (a, c) in enumerate(zip(accs, clock))
    ]
    run["train_clock_seconds"] = clock[-1]
    return run


def test_decomposition_report_states_framework_times_recipe(tmp_path):
    """The first lines of the report: total = framework x recipe per twin, and the seed recipe as written."""
    bursts = {c: [_burst(c, s)] for c, s in [("torch", 3000), ("torch (seed recipe)", 2800), ("seed-baseline", 2500)]}
    runs = {
        "torch": _clocked_run("torch", [0.97, 0.991], [5.0, 10.0], 32, 1),
        "torch (seed recipe)": _clocked_run("torch", [0.98, 0.989, 0.992], [10.0, 20.0, 30.0], 64, 10),
        "seed-baseline": _clocked_run("seed-baseline", [0.98, 0.985, 0.9905, 0.993], [15.0, 30.0, 45.0, 60.0], 64, 10),
    }
    runs["seed-baseline"]["wall_seconds"] = 300.0
    result = summarize("mnist-cnn", bursts, runs)
    d = result["decomposition"]["torch"]
    assert d["framework"] == pytest.approx(45 / 30) and d["recipe"] == pytest.approx(30 / 10)
    assert d["total"] == pytest.approx(d["framework"] * d["recipe"]) == pytest.approx(4.5)
    row = result["contestants"]["seed-baseline"]
    # time to target from the points (training clock), not from the epochs; evaluation time counted apart
    assert row["time_to_target_seconds"] == 45.0 and row["eval_seconds"] == 1.5
    assert row["time_to_target_epochs"] == pytest.approx(300 * 64 / 60_000, abs=0.01)
    md, page = write_report(result, tmp_path)
    first = md.read_text().split("|")[0]  # everything before the table
    assert "4.50x sooner than the seed baseline" in first and "= 1.50x from the framework" in first
    assert "x 3.00x from the training recipe" in first
    assert "framework factor 1.50x" in first and "recipe factor 3.00x" in first
    assert "as written (4 epochs): 99.30% final test accuracy" in first and "after 45.0 s" in first
    assert "batch 64, Adam 0.001 constant" in first and "Normalize((0.5,), (0.5,))" in first
    assert "framework factor 1.50x" in page.read_text()


def test_bench_bad_values_are_one_line_errors():
    from conftest import assert_one_line_error, cli_in_process

    assert_one_line_error(cli_in_process("bench", "mnist1d-mlp", "--eval-every", "0"), "--eval-every")
    assert_one_line_error(cli_in_process("bench", "mnist1d-mlp", "--precision", "fp32,fp8"), "fp8")


def test_seed_normalization_maps_pixels_to_plus_minus_one():
    """Normalize((0.5,), (0.5,)) after ToTensor: 0 -> -1, 255 -> 1; only the IDX image sets take it."""
    from conftest import real_data_dir
    from diptych.data import load_dataset
    from diptych.errors import DiptychError

    with pytest.raises(DiptychError, match="normalization 'half' for mnist1d"):
        load_dataset("mnist1d", normalize="half")
    data = load_dataset("mnist", real_data_dir("mnist"), normalize="half")
    assert data.x_train.min() == -1.0 and data.x_train.max() == 1.0 and data.x_test.dtype.name == "float32"


def test_report_refuses_damaged_eval_points_and_profiles(tmp_path):
    from conftest import assert_one_line_error, cli_in_process

    run = _clocked_run("torch", [0.97, 0.991], [5.0, 10.0], 32, 1)
    del run["evals"][1]["train_seconds"]
    bench = {"task": "mnist-cnn", "bursts": {"torch": [_burst("torch", 3000)]}, "runs": {"torch": run}, "machine": {}}
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    assert_one_line_error(cli_in_process("report", str(tmp_path), "--out", str(tmp_path / "o")), "its evals are not")
    bench["runs"] = {}
    bench["bursts"]["torch"][0]["profile"] = {"dir": "p", "steps": 10, "step_ms": 1.0, "top_ops": [{"name": "x"}]}
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    assert_one_line_error(cli_in_process("report", str(tmp_path), "--out", str(tmp_path / "o")), "bursts of 'torch'")
    good = {"dir": "p", "steps": 10, "step_ms": 1.0, "top_ops": [{"name": "x", "ms_per_step": 1.0, "share": 0.5}]}
    for kernels in ({"batch": 32, "ms": float("nan"), "layers": []}, {"batch": 32, "ms": 1.0, "layers": [{"ms": 1}]}):
        bench["bursts"]["torch"][0]["profile"] = {**good, "kernels": kernels}
        (tmp_path / "bench.json").write_text(json.dumps(bench))
        assert_one_line_error(
            cli_in_process("report", str(tmp_path), "--out", str(tmp_path / "o")), "bursts of 'torch'"
        )

"""Work between training steps (diptych.stephooks): evaluations on a schedule of steps, off the training
clock (``--eval-every``), and a profiler trace of a range of steps in each twin (``--profile-steps``)."""

import gzip
import json

import pytest

from conftest import assert_one_line_error, cli_in_process
from diptych.driver import RunConfig, train_and_evaluate
from diptych.stephooks import format_top_ops, parse_steps


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_eval_every_points_on_the_training_clock(framework, tmp_path):
    """mnist1d-mlp at batch 200: 20 steps per epoch (4,000 samples); every 6 steps for 2 epochs is steps
    6, 12, ..., 36 and the last, 40, unless the target (68%) is reached first: evaluation stops there."""
    config = RunConfig("mnist1d-mlp", framework, epochs=2, batch_size=200, eval_every=6, progress=False)
    run = train_and_evaluate(config, tmp_path)
    points = run["evals"]
    schedule = [*range(6, 40, 6), 40]
    first_hit = next((i for i, p in enumerate(points) if p["test_accuracy"] >= 0.68), None)
    expected = schedule if first_hit is None else schedule[: first_hit + 1]
    assert [p["step"] for p in points] == expected
    clock = [p["train_seconds"] for p in points]
    assert all(a < b for a, b in zip(clock, clock[1:])) and clock[-1] <= run["train_clock_seconds"] + 1e-3
    evaluating = sum(p["eval_seconds"] for p in points)
    assert evaluating > 0 and all(p["eval_seconds"] > 0 for p in points)
    # The clock leaves evaluation out: training + every evaluation (scheduled and end-of-epoch) fit in the wall.
    assert run["train_clock_seconds"] + evaluating <= run["wall_seconds"]
    assert run["train_clock_seconds"] >= run["compile_seconds"]  # compile is training time
    assert len(run["epochs"]) == 2  # the end-of-epoch evaluations go on


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_profile_steps_write_a_trace_and_rank_operations(framework, tmp_path):
    run = train_and_evaluate(
        RunConfig("mnist1d-mlp", framework, epochs=1, batch_size=400, profile_steps=(3, 5), progress=False), tmp_path
    )
    prof = run["profile"]
    assert prof["steps"] == [3, 5] and prof["step_ms"] > 0
    if framework == "torch":
        trace = tmp_path / "profile" / "torch.pt.trace.json"
        events = json.loads(trace.read_text())["traceEvents"]
    else:
        (trace,) = (tmp_path / "profile" / "plugins" / "profile").glob("*/*.trace.json.gz")
        with gzip.open(trace, "rt") as f:
            events = json.load(f)["traceEvents"]
    assert any(e.get("ph") == "X" for e in events)  # a trace Perfetto and TensorBoard open
    ops = prof["top_ops"]
    assert len(ops) >= 3 and all(o["ms_per_step"] > 0 and 0 < o["share"] for o in ops)
    assert [o["ms_per_step"] for o in ops] == sorted((o["ms_per_step"] for o in ops), reverse=True)
    # the MLP's matrix products are among the operations (torch: addmm/mm; XLA: dot or a fusion holding one)
    names = " ".join(o["name"] for o in ops)
    assert ("mm" in names) if framework == "torch" else ("dot" in names or "fusion" in names), names
    table = format_top_ops({framework: ops})
    assert table[0].startswith("| # |") and len(table) == 2 + min(12, len(ops))


def test_parse_steps():
    assert parse_steps("5:8") == (5, 8) and parse_steps("3:3") == (3, 3) and parse_steps(None) is None


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--profile-steps", "5:2"], "1 <= A <= B"),
        (["--profile-steps", "0:3"], "1 <= A <= B"),
        (["--profile-steps", "five"], "A:B"),
        (["--profile-steps", "400:500"], "after the run's last step"),  # 250 steps in the run
        (["--eval-every", "0"], "--eval-every"),
    ],
)
def test_bad_values_are_one_line_errors(args, needle, tmp_path):
    proc = cli_in_process(
        "train", "mnist1d-mlp", "--framework", "torch", "--epochs", "1", "--out", str(tmp_path), *args
    )
    assert_one_line_error(proc, needle)


def test_both_profilers_have_the_same_public_names():
    import importlib

    def public(fw):
        module = importlib.import_module(f"diptych.backends.{fw}.profile")
        return {
            n
            for n, v in vars(module).items()
            if not n.startswith("_") and getattr(v, "__module__", None) == module.__name__
        }

    assert public("torch") == public("jax") == {"start", "stop", "top_ops", "kernel_ms"}
    import inspect

    signature = [
        inspect.signature(importlib.import_module(f"diptych.backends.{fw}.profile").kernel_ms)
        for fw in ("torch", "jax")
    ]
    assert signature[0] == signature[1], signature

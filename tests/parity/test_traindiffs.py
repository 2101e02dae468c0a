"""Training diffs: `diptych parity` on identical batches, and proof that it can fail."""

import pytest

from conftest import cli_in_process, run_cli
from diptych.parity import run_parity

CASES = [  # (task, optimizer, lr, also in the fast tier at 10 steps)
    ("mnist1d-cnn", "adam", 1e-3, True),
    ("mnist1d-cnn", "sgd", 0.05, False),
    ("mnist1d-mlp", "adam", 1e-3, False),
    ("mnist1d-mlp", "sgd", 0.05, True),
    ("mnist1d-gru", "adam", 1e-3, False),
    ("mnist1d-lstm", "adam", 1e-3, True),
    ("mnist1d-rnn", "adam", 1e-3, False),
]


# `diptych parity`'s default of 100 steps, for every case, is the full tier's.
@pytest.mark.parametrize(
    "task,optimizer,lr,steps",
    [(t, o, lr, 10) for t, o, lr, fast in CASES if fast]
    + [pytest.param(t, o, lr, 100, marks=pytest.mark.full) for t, o, lr, _ in CASES],
)
def test_parity_passes(task, optimizer, lr, steps, mnist1d):
    report = run_parity(task, steps=steps, optimizer=optimizer, lr=lr, dataset=mnist1d)
    bad = [r.as_dict() for r in report.rows if not r.ok]
    assert report.ok, bad
    rows = {(r.check, r.tensor): r for r in report.rows}
    batch = {"mnist1d-mlp": 16}.get(task, 100)
    assert rows[("logits", f"(B={batch}, 10)")].max_abs <= 1e-5
    assert len(report.losses["torch"]) == len(report.losses["jax"]) == steps
    if steps >= 100:  # it trained (10 steps of SGD can still be on the plateau: there, it moved)
        assert report.losses["torch"][-1] < report.losses["torch"][0]
    assert report.losses["torch"][-1] != report.losses["torch"][0]


def test_parity_of_momentum_nesterov_and_adamw(mnist1d):
    """The other optimizers the CLI offers: the same weights in both twins, 20 steps, every check (logits,
    gradients, the parameters after one step and after every step) within the module's bounds. Each is
    the optimizer it names: the three trajectories differ."""
    losses = {}
    for optimizer, lr in (("momentum", 0.05), ("nesterov", 0.05), ("adamw", 1e-3)):
        report = run_parity("mnist1d-mlp", steps=20, optimizer=optimizer, lr=lr, dataset=mnist1d)
        assert report.ok, (optimizer, [r.as_dict() for r in report.rows if not r.ok])
        checks = {r.check for r in report.rows}
        assert {"logits", "gradient", "param after 1 step", "param after every step"} <= checks, optimizer
        assert len(report.losses["jax"]) == 20 and report.losses["torch"][-1] < report.losses["torch"][0]
        losses[optimizer] = report.losses["torch"]
    assert losses["momentum"] != losses["nesterov"] and losses["momentum"][:1] == losses["nesterov"][:1]


@pytest.mark.parametrize("steps", [10, pytest.param(100, marks=pytest.mark.full)])
def test_parity_mnist_cnn_real_data(steps, mnist):
    report = run_parity("mnist-cnn", steps=steps, dataset=mnist)
    assert report.ok, [r.as_dict() for r in report.rows if not r.ok]


def test_parity_detects_a_wrong_flatten_order(monkeypatch, mnist1d):
    """A JAX port that forgets to reorder fc1's input features (C, L) -> (L, C) must fail."""
    from diptych.backends.jax import weights as jw

    monkeypatch.setattr(jw, "_fc1_to_jax", lambda w, feature_shape: w.T)
    report = run_parity("mnist1d-cnn", steps=3, dataset=mnist1d)
    assert not report.ok
    assert report.worst().check in ("logits", "loss", "gradient")


def test_parity_detects_a_different_adam(monkeypatch, mnist1d):
    """Adam with another epsilon in one twin: same logits and gradients, different steps."""
    import optax

    from diptych.backends.jax import train as jt

    adam = optax.adam
    monkeypatch.setattr(jt.optax, "adam", lambda lr: adam(lr, eps=1e-3))
    monkeypatch.setattr(jt, "_JITTED", {})  # the steps built with the real Adam earlier in this process
    report = run_parity("mnist1d-mlp", steps=5, dataset=mnist1d)
    failed = {r.check for r in report.rows if not r.ok}
    assert "param after 1 step" in failed and "gradient" not in failed


def test_cli_parity_exit_codes_and_json(tmp_path):
    import json

    ok = run_cli("parity", "mnist1d-mlp", "--steps", "20", "--json")
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report["ok"] and {r["check"] for r in report["rows"]} >= {
        "logits",
        "gradient",
        "param after 1 step",
        "loss at every step",
        "param after every step",
    }
    table = run_cli("parity", "mnist1d-cnn", "--steps", "10")
    assert table.returncode == 0 and "PASS" in table.stdout and "conv2.weight" in table.stdout


def test_cli_parity_exits_1_on_a_mismatch(monkeypatch):
    """A real mismatch: a JAX twin that forgets to reorder fc1's input features (the wrong flatten order
    above), through the command. Exit 1 (not 2: the input was fine, the twins disagree), the table says
    FAIL, and one line on stderr names the worst check."""
    from diptych.backends.jax import weights as jw

    monkeypatch.setattr(jw, "_fc1_to_jax", lambda w, feature_shape: w.T)
    proc = cli_in_process("parity", "mnist1d-cnn", "--steps", "2")
    assert proc.returncode == 1, proc.stderr
    assert "FAIL" in proc.stdout
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("diptych: parity failed: ") and "diff" in line

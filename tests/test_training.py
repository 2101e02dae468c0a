"""Training reaches each task's target in both twins (the issue's acceptance bar)."""

import pytest

from diptych import RunConfig, evaluate_weights, train_and_evaluate
from diptych.tasks import get_task

# The GRU and the LSTM take 1-2 min a twin at their full budget, so each trains to its target in one
# twin here, alternating, and the other twin evaluates the weights below; that the two twins' training
# steps are the same is proven step by step in tests/parity (mnist1d-gru, mnist1d-lstm), and `diptych
# compare mnist1d-lstm` shows both reaching the bar.
TARGET_RUNS = [
    *[(fw, task) for task in ("mnist1d-cnn", "mnist1d-mlp", "mnist1d-rnn") for fw in ("torch", "jax")],
    ("jax", "mnist1d-gru"),
    ("torch", "mnist1d-lstm"),
]


@pytest.mark.slow
@pytest.mark.parametrize("framework, task", TARGET_RUNS)
def test_mnist1d_tasks_reach_their_targets(task, framework, mnist1d, tmp_path):
    # Targets: CNN 94% and MLP 68% (the MNIST-1D paper), GRU and LSTM 91% (the paper's GRU).
    run = train_and_evaluate(RunConfig(task, framework, progress=False), tmp_path, dataset=mnist1d)
    assert run["test_accuracy"] >= get_task(task).objective.target_accuracy, run["epochs"][-1]
    # The trained weights predict the same in the other twin (a float32 near-tie may flip one of 1,000).
    other = {"torch": "jax", "jax": "torch"}[framework]
    same, cross = (
        evaluate_weights(task, fw, tmp_path / "weights.safetensors", dataset=mnist1d) for fw in (framework, other)
    )
    assert (same["predictions"] != cross["predictions"]).sum() <= 1
    assert same["correct"] == round(run["test_accuracy"] * len(mnist1d.y_test))


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_mnist_cnn_reaches_99_in_its_half_epoch_budget(framework, trained_mnist_cnn):
    run, _ = trained_mnist_cnn(framework)
    assert len(run["epochs"]) == 1 and run["config"]["epochs"] == 0.5
    assert len(run["loss_curve"]) and run["loss_curve"][-1][0] == 938  # half of 1,875 steps, rounded
    assert run["test_accuracy"] >= 0.99, [e["test_accuracy"] for e in run["epochs"]]


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_mnist_mlp_reaches_98(framework, mnist, tmp_path):
    run = train_and_evaluate(RunConfig("mnist-mlp", framework, progress=False), tmp_path, dataset=mnist)
    assert run["test_accuracy"] >= 0.98, [e["test_accuracy"] for e in run["epochs"]]


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_mnist_rnn_short_run_lowers_the_loss(framework, mnist, tmp_path):
    """Row-by-row LSTM: one epoch on 6,400 digits learns (the full run, 98.8-98.9%, is in the notes)."""
    from diptych.data import Dataset

    small = Dataset("mnist", mnist.x_train[:6400], mnist.y_train[:6400], mnist.x_test[:1000], mnist.y_test[:1000])
    run = train_and_evaluate(RunConfig("mnist-rnn", framework, epochs=1, progress=False), tmp_path, dataset=small)
    curve = [loss for _, loss in run["loss_curve"]]
    assert curve[-1] < 0.7 * curve[0], curve
    assert run["test_accuracy"] > 0.5

"""Recurrent twins (RNN, LSTM, GRU): PyTorch's fused layers against the JAX lax.scan cells.

Gate order and bias placement are checked the strong way: the same canonical weights must give
the same logits and gradients (a swapped gate block or a GRU bias in the wrong place does not)."""

import numpy as np
import pytest

from diptych.backends import load_backend
from diptych.objectives import Classification
from diptych.parity import diff
from diptych.specs import RNNSpec
from diptych.tasks import Budget, OptimizerSpec, Task

T, J = load_backend("torch"), load_backend("jax")
# One layer over 40 steps is what the mnist1d tasks' models do (tests/parity/test_modeldiffs.py, fast tier):
# here in the full tier; two bidirectional layers in both.
SPECS = [pytest.param(RNNSpec(cell, 1, 40, 16), marks=pytest.mark.full) for cell in ("rnn", "lstm", "gru")] + [
    RNNSpec(cell, 4, 10, 8, num_layers=2, bidirectional=True) for cell in ("rnn", "lstm", "gru")
]


def _task(spec):
    return Task("test-rnn", "mnist1d", spec, OptimizerSpec(), Budget(1, 16), Classification(0.0, "test"))


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.describe() if isinstance(s, RNNSpec) else None)
def test_logits_and_gradients_match(spec):
    rng = np.random.default_rng(0)
    weights = {k: rng.uniform(-0.4, 0.4, s).astype(np.float32) for k, s in spec.param_shapes().items()}
    torch_t, jax_t = T.train.Trainer(_task(spec), 0, 1), J.train.Trainer(_task(spec), 0, 1)
    assert {k: v.shape for k, v in torch_t.export_weights().items()} == spec.param_shapes()
    assert {k: v.shape for k, v in jax_t.export_weights().items()} == spec.param_shapes()
    torch_t.load_weights(weights)
    jax_t.load_weights(weights)
    x = rng.standard_normal((16, 40)).astype(np.float32)
    y = rng.integers(0, 10, 16).astype(np.int32)
    t_loss, t_logits, t_grads = torch_t.loss_and_grads(x, y)
    j_loss, j_logits, j_grads = jax_t.loss_and_grads(x, y)
    assert diff(j_logits, t_logits)[0] <= 1e-5
    for k in t_grads:
        assert diff(j_grads[k], t_grads[k])[1] <= 1e-4, k


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_permuted_gate_block_is_caught(cell):
    """Swap two gate blocks in the JAX copy only: the outputs must no longer agree."""
    spec = RNNSpec(cell, 1, 40, 8)
    rng = np.random.default_rng(1)
    weights = {k: rng.uniform(-0.5, 0.5, s).astype(np.float32) for k, s in spec.param_shapes().items()}
    swapped = dict(weights)
    for k in ("rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0"):
        blocks = np.split(weights[k], 4 if cell == "lstm" else 3)
        blocks[0], blocks[1] = blocks[1], blocks[0]
        swapped[k] = np.concatenate(blocks)
    torch_t, jax_t = T.train.Trainer(_task(spec), 0, 1), J.train.Trainer(_task(spec), 0, 1)
    torch_t.load_weights(weights)
    jax_t.load_weights(swapped)
    x = rng.standard_normal((8, 40)).astype(np.float32)
    assert diff(jax_t.predict(x), torch_t.predict(x))[0] > 1e-3


def test_recurrent_weights_round_trip_and_train(mnist1d):
    spec = RNNSpec("gru", 1, 40, 16)
    torch_t, jax_t = T.train.Trainer(_task(spec), 0, 50), J.train.Trainer(_task(spec), 3, 50)
    jax_t.load_weights(torch_t.export_weights())
    w_t, w_j = torch_t.export_weights(), jax_t.export_weights()
    assert all(np.array_equal(w_t[k], w_j[k]) for k in w_t)
    losses = {"torch": [], "jax": []}
    for step in range(50):
        idx = np.arange(step * 16, (step + 1) * 16)
        x, y = mnist1d.x_train[idx], mnist1d.y_train[idx]
        losses["torch"].append(float(torch_t.train_step(x, y)))
        losses["jax"].append(float(jax_t.train_step(x, y)))
    for fw, ls in losses.items():
        assert np.mean(ls[-10:]) < np.mean(ls[:10]), fw  # it learns
    np.testing.assert_allclose(losses["jax"][:10], losses["torch"][:10], rtol=1e-4)

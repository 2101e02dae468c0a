"""Each model's shapes and parameter count, equal in both twins and to the neutral spec."""

import numpy as np
import pytest

from conftest import random_batch
from diptych.backends import load_backend
from diptych.tasks import TASKS, fit_vocab

torch_b = load_backend("torch")
jax_b = load_backend("jax")


def _input(task, batch=3):
    if task.dataset in ("mnist", "fashion-mnist"):
        return np.random.default_rng(0).standard_normal((batch, 28, 28)).astype(np.float32)
    return random_batch(task, batch, np.random.default_rng(0))[0]


@pytest.mark.parametrize("name", list(TASKS))
def test_param_count_and_names_match(name):
    task = fit_vocab(TASKS[name], 37)  # language models: any vocabulary size will do
    tm, jm = torch_b.models.build_model(task.model, 0), jax_b.models.build_model(task.model, 0)
    assert torch_b.models.num_params(tm) == jax_b.models.num_params(jm) == task.model.num_params()
    tw, jw = torch_b.weights.export(tm), jax_b.weights.export(jm)
    assert {k: v.shape for k, v in tw.items()} == {k: v.shape for k, v in jw.items()} == task.model.param_shapes()


def test_known_sizes():
    assert TASKS["mnist-cnn"].model.param_shapes()["fc1.weight"] == (128, 64 * 7 * 7)
    assert TASKS["mnist-cnn"].model.num_params() == 421_642
    assert TASKS["mnist-mlp"].model.num_params() == 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10
    assert TASKS["mnist1d-cnn"].model.param_shapes()["fc1.weight"] == (10, 125)  # the paper's linear_in=125
    assert TASKS["mnist1d-mlp"].model.num_params() == 40 * 100 + 100 + 100 * 100 + 100 + 100 * 10 + 10


@pytest.mark.parametrize("name", list(TASKS))
def test_output_shapes_and_same_function_given_same_weights(name):
    import jax.numpy as jnp
    import torch

    task = fit_vocab(TASKS[name], 37)
    x = _input(task)
    tm, jm = torch_b.models.build_model(task.model, 0), jax_b.models.build_model(task.model, 1)
    jax_b.weights.load(jm, torch_b.weights.export(tm))
    with torch.no_grad():
        t_out = tm(torch.from_numpy(x))
    j_out = jm(jnp.asarray(x))
    if task.model.carries_state:  # a recurrent language model also returns its state
        (t_out, _), (j_out, _) = t_out, j_out
    t_out, j_out = t_out.numpy(), np.asarray(j_out)
    expected = (3, task.model.seq_len, 37) if task.dataset == "text" else (3, task.model.num_classes)
    assert t_out.shape == j_out.shape == expected
    np.testing.assert_allclose(j_out, t_out, atol=1e-5, rtol=0)


def test_transformers_draw_gpt2s_initialization_in_both_twins():
    """N(0, 0.02) weights and embeddings, N(0, 0.02 / sqrt(2 * layers)) residual projections, zero biases,
    unit LayerNorm gains: the same distributions in both twins."""
    spec = fit_vocab(TASKS["chars-gpt"], 37).model
    for w in (
        torch_b.weights.export(torch_b.models.build_model(spec, 0)),
        jax_b.weights.export(jax_b.models.build_model(spec, 0)),
    ):
        assert abs(w["blocks.0.attn.qkv.weight"].std() - 0.02) < 0.002
        assert abs(w["blocks.1.mlp.proj.weight"].std() - 0.02 / np.sqrt(2 * spec.layers)) < 0.001
        assert abs(w["embed.weight"].std() - 0.02) < 0.003
        assert not w["blocks.0.mlp.fc.bias"].any() and (w["ln_f.weight"] == 1).all()


@pytest.mark.parametrize("name", ["mnist-cnn", "mnist1d-mlp"])
def test_same_init_distribution(name):
    """Both twins draw each tensor from U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (PyTorch's default)."""
    spec = TASKS[name].model
    tw = torch_b.weights.export(torch_b.models.build_model(spec, 0))
    jw = jax_b.weights.export(jax_b.models.build_model(spec, 0))
    for key in spec.param_shapes():
        fan_in = int(np.prod(tw[key.replace("bias", "weight")].shape[1:]))
        bound = 1 / np.sqrt(fan_in)
        for w in (tw[key], jw[key]):
            assert np.abs(w).max() <= bound + 1e-7
            if w.size >= 1000:  # uniform: std = bound / sqrt(3)
                assert abs(w.std() - bound / np.sqrt(3)) < 0.05 * bound


@pytest.mark.parametrize("reverse", [False, True])
def test_lstm_scan_gradient_is_autodiffs(reverse, float32):
    """The JAX LSTM's hand-written scan gradient equals JAX's own differentiation of the same
    recurrence, for every input (projections, both weights, the initial state) and every output."""
    import jax
    import jax.numpy as jnp

    ops = jax_b.ops
    t, b, h = 5, 3, 4
    keys = jax.random.split(jax.random.key(0), 8)
    xi, w_hh, b_hh = (jax.random.normal(k, s) for k, s in zip(keys, [(t, b, 4 * h), (h, 4 * h), (4 * h,)]))
    h0, c0 = jax.random.normal(keys[3], (b, h)), jax.random.normal(keys[4], (b, h))
    weights = [jax.random.normal(k, s) for k, s in zip(keys[5:], [(t, b, h), (b, h), (b, h)])]

    def plain(xi, w_hh, b_hh, h0, c0):
        def step(carry, xt):
            hh, c, _ = ops._lstm_cell(xt + (carry[0] @ w_hh + b_hh), carry[1])
            return (hh, c), hh

        (hh, c), ys = jax.lax.scan(step, (h0, c0), xi, reverse=reverse)
        return ys, hh, c

    def loss(scan, *args):  # every output counts, with its own random weights
        return sum(jnp.sum(out * wt) for out, wt in zip(scan(*args), weights))

    def fast(xi, w_hh, b_hh, h0, c0):  # as RecurrentLayer calls it: the recurrent bias folded into xi
        return ops.lstm_scan(xi + b_hh, w_hh, h0, c0, reverse)

    args = (xi, w_hh, b_hh, h0, c0)
    # The same sums in another order (the bias added before the loop): equal to float32 rounding.
    np.testing.assert_allclose(np.asarray(fast(*args)[0]), np.asarray(plain(*args)[0]), rtol=1e-6, atol=1e-6)
    want = jax.jit(jax.grad(lambda *a: loss(plain, *a), argnums=range(5)))(*args)
    got = jax.jit(jax.grad(lambda *a: loss(fast, *a), argnums=range(5)))(*args)
    for name, g, w in zip(["xi", "w_hh", "b_hh", "h0", "c0"], got, want):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-5, atol=1e-5, err_msg=name)

"""Model diffs: same weights in, same logits and gradients out, for every model, on random
weights and inputs (no dataset needed). float32 pinned: TF32 off, JAX matmuls at float32."""

import numpy as np
import pytest

from conftest import random_batch
from diptych.backends import load_backend
from diptych.parity import diff
from diptych.tasks import TASKS, fit_vocab

T, J = load_backend("torch").train, load_backend("jax").train
MODELS = {t.model: name for name, t in reversed(list(TASKS.items()))}  # one task per distinct model


@pytest.mark.parametrize("name", sorted(MODELS.values()))
def test_logits_and_gradients_match_on_random_weights(name):
    task = fit_vocab(TASKS[name], 37)  # language models: any vocabulary size will do
    rng = np.random.default_rng(42)
    torch_t, jax_t = T.Trainer(task, 0, 1), J.Trainer(task, 0, 1)
    weights = {k: rng.normal(0, 0.1, shape).astype(np.float32) for k, shape in task.model.param_shapes().items()}
    torch_t.load_weights(weights)
    jax_t.load_weights(weights)
    x, y = random_batch(task, 32, rng)
    t_loss, t_logits, t_grads = torch_t.loss_and_grads(x, y)
    j_loss, j_logits, j_grads = jax_t.loss_and_grads(x, y)
    assert diff(j_logits, t_logits)[0] <= 1e-5
    assert diff(j_loss, t_loss)[1] <= 1e-5
    assert set(t_grads) == set(j_grads) == set(weights)
    for k in t_grads:
        assert diff(j_grads[k], t_grads[k])[1] <= 1e-4, k


def test_float32_is_pinned(restores_precision):
    """Each twin's configure() pins float32 itself, whatever was set before (here: the opposite)."""
    import jax
    import torch

    jax.config.update("jax_default_matmul_precision", "bfloat16")  # as a user's own code might have left it
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    T.configure()
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    assert jax.config.jax_default_matmul_precision == "bfloat16"  # each twin pins its own framework
    J.configure()
    assert jax.config.jax_default_matmul_precision == "float32"


@pytest.mark.parametrize("shape,p", [((3, 9, 7, 5), 2), ((2, 11, 4), 3)])
def test_max_pool_matches_torch_at_ties_and_remainders(shape, p):
    """The JAX pool routes the gradient to the first maximum of a window, as PyTorch does (JAX's
    own ``max`` would split it between ties), and drops a remainder row/column (floor mode)."""
    import jax
    import jax.numpy as jnp
    import torch

    from diptych.backends.jax.ops import max_pool

    rng = np.random.default_rng(0)
    x = rng.integers(-2, 3, shape).astype(np.float32)  # small integers: most windows have ties
    g = rng.standard_normal((shape[0], *(s // p for s in shape[1:-1]), shape[-1])).astype(np.float32)
    y, vjp = jax.vjp(lambda a: max_pool(a, p), jnp.asarray(x))
    xt = torch.tensor(np.moveaxis(x, -1, 1), requires_grad=True)  # channels first
    pool = torch.nn.functional.max_pool2d if len(shape) == 4 else torch.nn.functional.max_pool1d
    yt = pool(xt, p)
    yt.backward(torch.tensor(np.moveaxis(g, -1, 1)))
    np.testing.assert_array_equal(np.asarray(y), np.moveaxis(yt.detach().numpy(), 1, -1))
    np.testing.assert_array_equal(np.asarray(vjp(jnp.asarray(g))[0]), np.moveaxis(xt.grad.numpy(), 1, -1))


def test_pinning_float32_in_a_test_is_undone():
    """The conftest helpers the tests pin float32 with restore what was set before them."""
    import jax
    import torch

    from conftest import pinned_float32, precision_restored

    with precision_restored():
        jax.config.update("jax_default_matmul_precision", "tensorfloat32")
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = True, False
        with pinned_float32():
            assert jax.config.jax_default_matmul_precision == "float32" and not torch.backends.cuda.matmul.allow_tf32
        assert jax.config.jax_default_matmul_precision == "tensorfloat32"
        assert torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32

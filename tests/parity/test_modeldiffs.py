"""Model diffs: same weights in, same logits and gradients out, for every model, on random
weights and inputs (no dataset needed). float32 pinned: TF32 off, JAX matmuls at float32."""

import numpy as np
import pytest

from diptych.backends import load_backend
from diptych.parity import diff
from diptych.tasks import TASKS

T, J = load_backend("torch").train, load_backend("jax").train
MODELS = {t.model: name for name, t in reversed(list(TASKS.items()))}  # one task per distinct model


@pytest.mark.parametrize("name", sorted(MODELS.values()))
def test_logits_and_gradients_match_on_random_weights(name):
    task = TASKS[name]
    rng = np.random.default_rng(42)
    torch_t, jax_t = T.Trainer(task, 0, 1), J.Trainer(task, 0, 1)
    weights = {k: rng.normal(0, 0.1, shape).astype(np.float32) for k, shape in task.model.param_shapes().items()}
    torch_t.load_weights(weights)
    jax_t.load_weights(weights)
    shape = task.model.input_shape()
    x = rng.standard_normal((32, *shape)).astype(np.float32)
    y = rng.integers(0, 10, 32).astype(np.int32)
    t_loss, t_logits, t_grads = torch_t.loss_and_grads(x, y)
    j_loss, j_logits, j_grads = jax_t.loss_and_grads(x, y)
    assert diff(j_logits, t_logits)[0] <= 1e-5
    assert diff(j_loss, t_loss)[1] <= 1e-5
    assert set(t_grads) == set(j_grads) == set(weights)
    for k in t_grads:
        assert diff(j_grads[k], t_grads[k])[1] <= 1e-4, k


def test_float32_is_pinned():
    import jax
    import torch

    T.configure()
    J.configure()
    assert jax.config.jax_default_matmul_precision == "float32"
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32

"""Speech twins: the augmentation ops agree across frameworks (the fsdd models' logits and gradients
are checked with every other model in test_modeldiffs.py; `diptych parity fsdd-cnn` on the real data
is quoted in BENCHMARKS.md, Task results).

float32 pinned (TF32 off, JAX matmuls at float32), as in the other parity tests."""

import jax
import numpy as np
import pytest
import torch

from diptych.augment_specs import AugmentSpec
from diptych.backends import load_backend
from diptych.data.audio import FrontEnd, feature_stats
from diptych.data.augment import draw
from diptych.objectives import Classification
from diptych.parity import diff
from diptych.specs import CNNSpec, ConvSpec
from diptych.tasks import Budget, OptimizerSpec, Task

T, J = load_backend("torch"), load_backend("jax")


pytestmark = pytest.mark.usefixtures("float32")  # conftest: pinned for each test, restored after


def _batch(b=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((b, 32, 64)).astype(np.float32)  # (B, M, T) normalized log-mel
    stats = feature_stats(rng.normal(-8, 2, (4, 32, 64)), FrontEnd())
    return x, draw(AugmentSpec(warp=0.15, noise_prob=1.0), stats, x, seed, 0, 0)


def test_both_twins_augment_a_batch_identically():
    x, p = _batch()
    t_out = T.augment.apply(torch.from_numpy(x), {k: torch.from_numpy(v) for k, v in p.items()}).numpy()
    j_out = np.asarray(jax.jit(J.augment.apply)(x, p))
    assert diff(j_out, t_out)[0] <= 1e-5
    # and both do what the neutral docstring says: warp, shift, then noise, then masks
    b = int(np.flatnonzero(p["shift"] > 0)[0])
    s, lo, w = int(p["shift"][b]), p["warp_lo"][b], p["warp_w"][b][:, None]
    masked = p["keep"][b] == 0
    np.testing.assert_array_equal(t_out[b][masked], 0)
    warped = (1 - w) * x[b][lo] + w * x[b][lo + 1]  # (M, T)
    ref = np.concatenate([np.repeat(p["silence"], s, 1), warped[:, :-s]], 1)  # (M, T) shifted later by s
    ref = (np.log(np.exp(ref * p["std"] + p["mean"]) + p["noise"][b]) - p["mean"]) / p["std"]
    np.testing.assert_allclose(t_out[b][~masked], ref[~masked], atol=1e-4)


def test_every_audio_operation_at_once_is_the_same_in_both_twins():
    """Warp, channel, shift, noise, masks and mixup together; the channel's curve is what was drawn, and
    mixup blends each recording with its partner by the drawn share."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((8, 32, 64)).astype(np.float32)  # (B, M, T)
    stats = feature_stats(rng.normal(-8, 2, (4, 32, 64)), FrontEnd())
    p = draw(AugmentSpec(warp=0.15, eq=1.0, noise_prob=1.0, mixup=0.4), stats, x, 0, 0, 0)
    plain = draw(AugmentSpec(warp=0.15, noise_prob=1.0), stats, x, 0, 0, 0)
    assert all(np.array_equal(plain[k], p[k]) for k in plain) and p["eq"].shape == (8, 32, 1)
    assert np.abs(p["eq"] * p["std"]).max() <= 4.0 + 1e-5  # four terms of at most 1 nat each
    assert sorted(p["perm"]) == list(range(8)) and ((p["lam"] > 0) & (p["lam"] < 1)).all()
    t_out = T.augment.apply(torch.from_numpy(x), {k: torch.from_numpy(v) for k, v in p.items()}).numpy()
    j_out = np.asarray(jax.jit(J.augment.apply)(x, p))
    assert diff(j_out, t_out)[0] <= 1e-5
    unmixed = {k: v for k, v in p.items() if k not in ("perm", "lam")}
    t_unmixed = T.augment.apply(torch.from_numpy(x), {k: torch.from_numpy(v) for k, v in unmixed.items()}).numpy()
    lam = p["lam"][:, None, None]
    np.testing.assert_allclose(t_out, lam * t_unmixed + (1 - lam) * t_unmixed[p["perm"]], atol=1e-5)
    t_plain = T.augment.apply(torch.from_numpy(x), {k: torch.from_numpy(v) for k, v in plain.items()}).numpy()
    assert np.abs(t_unmixed - t_plain).max() > 0.1  # the channel changed the batch


def test_augmentation_inside_the_train_step_matches():
    """One Adam step with augmentation on a small log-mel CNN: same loss and weights in both twins."""
    spec = CNNSpec(dims=2, in_size=(32, 64), convs=(ConvSpec(4, 3, padding=1, pool=4),))
    task = Task(
        "test-aug", "fsdd", spec, OptimizerSpec(), Budget(1, 16), Classification(0.0, "test"), augment=AugmentSpec()
    )
    x, p = _batch(16, seed=1)
    y = np.arange(16, dtype=np.int32) % 10
    torch_t, jax_t, plain = T.train.Trainer(task, 0, 10), J.train.Trainer(task, 0, 10), T.train.Trainer(task, 0, 10)
    jax_t.load_weights(torch_t.export_weights())
    plain.load_weights(torch_t.export_weights())
    lt, lj = float(torch_t.train_step(x, y, p)), float(jax_t.train_step(x, y, p))
    assert diff(lj, lt)[1] <= 1e-5
    tw, jw = torch_t.export_weights(), jax_t.export_weights()
    assert all(diff(jw[k], tw[k])[1] <= 1e-3 for k in tw)  # Adam's bound, see diptych.parity
    assert abs(float(plain.train_step(x, y)) - lt) > 1e-4  # the augmentation did change the batch


def test_the_voice_tasks_views_give_the_same_probabilities_in_both_twins():
    """fsdd-cnn-voice reads each recording in nine shifted views (objectives.class_probabilities): given the
    same weights, the twins' averaged probabilities agree to float32 rounding."""
    from diptych.objectives import class_probabilities
    from diptych.tasks import TASKS

    task = TASKS["fsdd-cnn-voice"]
    rng = np.random.default_rng(5)
    params = {k: rng.normal(0, 0.1, s).astype(np.float32) for k, s in task.model.param_shapes().items()}
    x = rng.standard_normal((6, 32, 64)).astype(np.float32)  # (N, M, T) normalized log-mel
    probs = {}
    for name, backend in (("torch", T), ("jax", J)):
        trainer = backend.train.Trainer(task, 0, 1)
        trainer.load_weights(params, "parity")
        probs[name] = class_probabilities(trainer, x, views=True)  # (N, 10)
    assert diff(probs["jax"], probs["torch"])[0] <= 1e-5
    one = class_probabilities(trainer, x)  # one view: other numbers, so the views were read
    assert np.abs(one - probs["jax"]).max() > 1e-3

"""Image augmentation parity: both twins apply the same draws to real MNIST batches alike (issue #13),
and the check notices a twin whose rotation direction or pixel-centre convention differs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from conftest import pinned_float32, real_data_dir
from diptych.augment_specs import ImageAugmentSpec
from diptych.backends.jax import augment as jax_aug
from diptych.backends.jax import ops as jax_ops
from diptych.backends.torch import augment as torch_aug
from diptych.data import load_dataset
from diptych.data.augment import draw_image
from diptych.errors import DiptychError
from diptych.tasks import choose_augment, get_task


@pytest.fixture(scope="module", autouse=True)
def _float32():
    with pinned_float32():  # restored after this module
        yield


OPS = [
    "none",
    "shift:2",
    "rotate:10",
    "scale:0.1",
    "erase:0.5",
    "flip:1",
    "mixup:0.2",
    "cutmix:1",
    "shift:2,rotate:10,scale:0.1,erase:0.5",
]


@pytest.fixture(scope="module")
def mnist():
    data = load_dataset("mnist", real_data_dir("mnist"))
    return data.x_train[:256], float(data.x_train.min())


def _both(x, params):
    t = torch_aug.apply(torch.from_numpy(x), {k: torch.from_numpy(v) for k, v in params.items()}).numpy()
    # A fresh function each time: jit's cache would otherwise keep a trace from before a monkeypatch.
    j = jax.jit(lambda a, p: jax_aug.apply(a, p))(jnp.asarray(x), {k: jnp.asarray(v) for k, v in params.items()})
    return t, np.asarray(j)


@pytest.mark.parametrize("ops", OPS)
def test_twins_augment_alike(mnist, ops):
    x, fill = mnist
    spec = ImageAugmentSpec() if ops == "none" else ImageAugmentSpec.parse(ops)
    for step in range(2):
        params = draw_image(spec, x.shape, fill, 0, 1, step)
        t, j = _both(x, params)
        assert np.abs(t - j).max() <= 1e-5, ops
        if ops != "none":
            assert np.abs(t - x).max() > 0.5, "the augmentation changed nothing"


def _mismatch(mnist, patch, monkeypatch) -> float:
    x, fill = mnist
    params = draw_image(ImageAugmentSpec(rotate=10.0), x.shape, fill, 0, 0, 0)
    patch(monkeypatch)
    t, j = _both(x, params)
    return float(np.abs(t - j).max())


def test_parity_catches_a_reversed_rotation(mnist, monkeypatch):
    original = jax_aug.affine_grid

    def reversed_rotation(theta, h, w):  # the transposed 2x2 part: a rotation the other way
        return original(theta.at[:, :, :2].set(jnp.swapaxes(theta[:, :, :2], 1, 2)), h, w)

    assert _mismatch(mnist, lambda m: m.setattr(jax_aug, "affine_grid", reversed_rotation), monkeypatch) > 0.1


def test_parity_catches_corner_aligned_pixels(mnist, monkeypatch):
    def corners(n):  # align_corners=True: the first and last pixel centres at -1 and 1
        return np.linspace(-1, 1, n, dtype=np.float32)

    assert _mismatch(mnist, lambda m: m.setattr(jax_ops, "pixel_centres", corners), monkeypatch) > 0.1


def test_mixed_labels_give_the_same_loss_in_both_twins():
    rng = np.random.default_rng(0)
    logits, y = rng.normal(size=(8, 10)).astype(np.float32), rng.integers(0, 10, 8).astype(np.int32)
    params = draw_image(ImageAugmentSpec(mixup=0.2), (8, 28, 28), 0.0, 0, 0, 0)
    t = torch_aug.mixed_loss(
        torch.from_numpy(logits), torch.from_numpy(y).long(), {k: torch.from_numpy(v) for k, v in params.items()}
    ).item()
    j = float(jax_aug.mixed_loss(jnp.asarray(logits), jnp.asarray(y), {k: jnp.asarray(v) for k, v in params.items()}))
    plain = float(torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(y).long()))
    assert abs(t - j) < 1e-5 and abs(t - plain) > 1e-3  # mixed labels change the loss, alike in both


def test_label_smoothing_gives_the_same_loss_in_both_twins():
    """torch's F.cross_entropy(label_smoothing=e) and the JAX twin's cross_entropy agree, alone and under
    mixup, and smoothing changes the loss (to the value its definition gives)."""
    rng = np.random.default_rng(1)
    logits, y = rng.normal(size=(8, 10)).astype(np.float32), rng.integers(0, 10, 8).astype(np.int32)
    params = draw_image(ImageAugmentSpec(mixup=0.2), (8, 28, 28), 0.0, 0, 0, 0)
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    by_hand = float(np.mean(-0.9 * logp[np.arange(8), y] - 0.1 * logp.mean(1)))
    for p in (None, params):
        t = torch_aug.mixed_loss(
            torch.from_numpy(logits),
            torch.from_numpy(y).long(),
            None if p is None else {k: torch.from_numpy(v) for k, v in p.items()},
            0.1,
        ).item()
        j = float(
            jax_aug.mixed_loss(
                jnp.asarray(logits),
                jnp.asarray(y),
                None if p is None else {k: jnp.asarray(v) for k, v in p.items()},
                0.1,
            )
        )
        plain = float(jax_aug.mixed_loss(jnp.asarray(logits), jnp.asarray(y), None if p is None else p, 0.0))
        assert abs(t - j) < 1e-5 and abs(j - plain) > 1e-3
        if p is None:
            assert abs(j - by_hand) < 1e-5


def test_bad_augment_options_are_one_line_errors():
    for bad, words in [
        ("spin:3", "unknown operation"),
        ("shift:1.5", "whole pixels"),
        ("rotate:x", "number"),
        ("mixup,cutmix", "not both"),
    ]:
        with pytest.raises(DiptychError, match=words):
            choose_augment(get_task("mnist-cnn"), bad)
    with pytest.raises(DiptychError, match="mirrored digit"):
        choose_augment(get_task("mnist-cnn"), "flip")
    with pytest.raises(DiptychError, match="image tasks"):
        choose_augment(get_task("mnist1d-mlp"), "shift:2")
    assert choose_augment(get_task("fashion-mnist-cnn"), "flip").augment.describe() == "flip:0.5"


@pytest.mark.parametrize("ops", ["shift:2,rotate:10,scale:0.1,erase:0.5,cutmix", "mixup"])
def test_augmented_train_step_loss_is_the_same_in_both_twins(mnist, ops):
    """One augmented step (mixed labels included) from the same weights gives the same loss in both twins."""
    from diptych.backends.jax.train import Trainer as JaxTrainer
    from diptych.backends.torch.train import Trainer as TorchTrainer

    x, fill = mnist
    x, y = x[:64], np.random.default_rng(0).integers(0, 10, 64).astype(np.int32)
    task = choose_augment(get_task("mnist-cnn"), ops)
    params = draw_image(task.augment, x.shape, fill, 0, 0, 0)
    tt, jt = TorchTrainer(task, 0, 10), JaxTrainer(task, 0, 10)
    jt.load_weights(tt.export_weights())
    losses = [float(t.losses_to_numpy([t.train_step(x, y, params)])[0]) for t in (tt, jt)]
    plain = float(tt.loss_and_grads(x, y)[0])  # after the step, without augmentation: a different number
    assert abs(losses[0] - losses[1]) < 1e-4 and abs(losses[0] - plain) > 1e-3


def test_three_channel_cnn_predicts_alike_in_both_twins():
    import dataclasses

    from diptych.backends.jax.train import Trainer as JaxTrainer
    from diptych.backends.torch.train import Trainer as TorchTrainer

    task = get_task("image-cnn")
    task = dataclasses.replace(task, model=dataclasses.replace(task.model, in_size=20, in_channels=3, num_classes=4))
    x = np.random.default_rng(0).normal(size=(5, 3, 20, 20)).astype(np.float32)  # (B, C, H, W)
    tt, jt = TorchTrainer(task, 0, 1), JaxTrainer(task, 0, 1)
    jt.load_weights(tt.export_weights())
    assert np.abs(tt.predict(x) - jt.predict(x)).max() < 1e-5


def test_bad_augment_on_the_command_line_is_one_line_exit_2(tmp_path):
    from conftest import run_cli

    proc = run_cli("train", "mnist-cnn", "--framework", "torch", "--augment", "shift:2,spin", "--out", str(tmp_path))
    assert proc.returncode == 2 and "unknown operation 'spin'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_run_settings_record_and_resume_keep_the_augmentation():
    from diptych.driver import RunConfig, resolve

    task, settings = resolve(RunConfig("mnist-cnn", "torch", augment="rotate:5,shift:1"))
    assert settings["augment"] == "shift:1,rotate:5" and task.augment.rotate == 5
    assert resolve(RunConfig("mnist-cnn-aug", "torch"))[1]["augment"] == "shift:2,rotate:10,scale:0.1"
    saved = {**settings, "augment": "shift:1,rotate:5"}
    task, _ = resolve(RunConfig("mnist-cnn", "torch", resume=True), saved)  # no --augment: the saved one
    assert task.augment.describe() == "shift:1,rotate:5"
    with pytest.raises(DiptychError, match="cannot change --augment"):
        resolve(RunConfig("mnist-cnn", "torch", augment="none", resume=True), saved)

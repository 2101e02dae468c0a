"""The four reference architectures of examples/port/: each converts torch -> NNX -> torch bit-exactly
and passes check() in training mode with gradients and 10 SGD steps within diptych's parity bounds.
NNX models are built with zero weights (build_abstract: their initializers would compile for each
shape, minutes on this CPU); convert overwrites every weight, and the round trip test starts from
the torch model's random ones."""

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("flax")

import resnet  # noqa: E402
import tagger  # noqa: E402
import transformer  # noqa: E402
import unet  # noqa: E402
from flax import nnx  # noqa: E402

from diptych.port import check, convert  # noqa: E402
from diptych.port._nnx import build_abstract  # noqa: E402

RNG = np.random.default_rng(0)
CASES = {
    "resnet": (resnet, [RNG.standard_normal((4, 3, 8, 8)).astype(np.float32)]),
    "transformer": (transformer, [RNG.standard_normal((2, 6, 16)).astype(np.float32)]),
    "unet": (unet, [RNG.standard_normal((2, 1, 8, 8)).astype(np.float32)]),
    "tagger": (tagger, [RNG.integers(0, tagger.VOCAB, (3, 7))]),
}


@pytest.fixture(autouse=True)
def seeded():
    """The torch models draw their weights from torch's global generator: seeded per test, so that a test's
    result does not depend on which tests ran before it. (The bounds are float32's: one ResNet init in four
    ends a 10-step train-mode check just past them; docs/porting.md.)"""
    import torch

    torch.manual_seed(0)


@pytest.mark.parametrize("name", sorted(CASES))
def test_converts_both_ways_bit_exact(name):
    module, x = CASES[name]
    tm, nm = module.torch_model(), build_abstract(lambda: module.nnx_model(nnx.Rngs(0)))
    mapping = convert(tm, nm, inputs=x)
    back = module.torch_model()
    assert convert(nm, back, mapping, inputs=x) == mapping
    for k, v in tm.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            assert np.array_equal(v.numpy(), back.state_dict()[k].numpy()), k


DEEP = {"resnet", "unet"}  # their 10-step checks compile for seconds: the full tier


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.full) if n in DEEP else n for n in sorted(CASES)])
def test_check_passes_with_training_and_10_steps(name):
    module, x = CASES[name]
    report = check(module.torch_model(), build_abstract(lambda: module.nnx_model(nnx.Rngs(0))), x, train=True, steps=10)
    assert report.ok, report.worst()
    assert report.first_divergence is None
    checks = {r.check for r in report.rows}
    assert {"outputs", "gradient", "param after every step", "loss at every step"} <= checks
    assert max(r.max_abs for r in report.rows if r.check == "outputs") <= 1e-5


@pytest.mark.full
def test_resnet_eval_mode_uses_running_statistics():
    tm, nm = resnet.torch_model(), build_abstract(lambda: resnet.nnx_model(nnx.Rngs(0)))
    import torch

    with torch.no_grad():  # non-trivial running statistics, so eval differs from train
        for m in tm.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    report = check(tm, nm, CASES["resnet"][1], train=False)
    assert report.ok, report.worst()

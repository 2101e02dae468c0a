"""Each porting pitfall of issue #15 as a subtly wrong port: check() fails and names the layer."""

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("flax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import torch  # noqa: E402
import transformer  # noqa: E402
import unet  # noqa: E402
from flax import nnx  # noqa: E402
from torch import nn  # noqa: E402

from diptych.port import check, convert  # noqa: E402
from diptych.port._nnx import build_abstract  # noqa: E402
from diptych.port.nnx_layers import BatchNorm  # noqa: E402

pytestmark = pytest.mark.full  # the full tier: the port pitfalls

RNG = np.random.default_rng(1)
SEQ = RNG.standard_normal((2, 5, 16)).astype(np.float32) * 0.05  # small activations: epsilon matters


def test_gelu_approximation_names_the_activation():
    wrong = build_abstract(lambda: transformer.nnx_model(nnx.Rngs(0), approximate_gelu=True))
    r = check(transformer.torch_model(), wrong, [SEQ])
    assert not r.ok
    assert r.first_divergence["layer"] == "activation"
    assert "GELU" in r.first_divergence["hint"]


def test_layernorm_epsilon_names_the_norm():
    wrong = build_abstract(lambda: transformer.nnx_model(nnx.Rngs(0), epsilon=1e-6))
    r = check(transformer.torch_model(), wrong, [SEQ])
    assert not r.ok
    assert r.first_divergence["layer"] == "norm1"
    assert "epsilon" in r.first_divergence["hint"]


class TorchCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):  # (B, 2, 8, 8)
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


class NNXCNN(nnx.Module):
    def __init__(self, rngs, padding=((1, 1), (1, 1)), bn=None, use_running_average=None):
        self.conv = nnx.Conv(2, 4, (3, 3), 2, padding=padding, use_bias=False, rngs=rngs)
        self.bn = bn or BatchNorm(4, rngs=rngs)
        self.fc = nnx.Linear(4 * 4 * 4, 3, rngs=rngs)
        self.ura = use_running_average

    def __call__(self, x):  # (B, 8, 8, 2)
        x = jax.nn.relu(self.bn(self.conv(x), use_running_average=self.ura))
        return self.fc(x.reshape(len(x), -1))


IMG = RNG.standard_normal((4, 2, 8, 8)).astype(np.float32)


def test_right_cnn_port_passes():
    assert check(TorchCNN(), NNXCNN(nnx.Rngs(0)), [IMG], train=True, steps=2).ok


def test_batchnorm_momentum_names_the_norm():
    wrong = NNXCNN(nnx.Rngs(0), bn=nnx.BatchNorm(4, momentum=0.1, use_fast_variance=False, rngs=nnx.Rngs(0)))
    r = check(TorchCNN(), wrong, [IMG], train=True, steps=1)
    assert not r.ok
    assert r.first_divergence["layer"] == "bn"
    assert "momentum" in r.first_divergence["hint"]


def test_batchnorm_mode_names_the_norm():
    r = check(TorchCNN(), NNXCNN(nnx.Rngs(0), use_running_average=True), [IMG], train=True)
    assert not r.ok
    assert r.first_divergence["layer"] == "bn"
    assert "mode" in r.first_divergence["hint"]


def test_padding_same_with_stride_names_the_conv():
    r = check(TorchCNN(), NNXCNN(nnx.Rngs(0), padding="SAME"), [IMG])
    assert not r.ok
    assert r.first_divergence["layer"] == "conv"
    assert "SAME" in r.first_divergence["hint"]


def test_flatten_order_names_the_linear():
    tm, nm = TorchCNN().eval(), NNXCNN(nnx.Rngs(0))
    convert(tm, nm, inputs=[IMG])
    nm.fc.kernel[...] = jnp.asarray(tm.fc.weight.detach().numpy().T)  # a hand port: plain transpose
    r = check(tm, nm, [IMG], load=False)
    assert not r.ok
    assert r.first_divergence["layer"] == "fc"
    assert "flatten" in r.first_divergence["hint"]


def test_attention_packing_names_the_attention():
    tm, nm = transformer.torch_model(), build_abstract(lambda: transformer.nnx_model(nnx.Rngs(0)))
    convert(tm, nm, inputs=[SEQ])
    w = tm.self_attn.in_proj_weight.detach().numpy()  # [W_q; W_k; W_v], a hand port splitting heads wrongly
    e, h = w.shape[1], transformer.HEADS
    nm.self_attn.query.kernel[...] = jnp.asarray(w[:e].reshape(h, e // h, e).transpose(2, 1, 0).reshape(e, h, -1))
    r = check(tm, nm, [SEQ * 20], load=False)
    assert not r.ok
    assert r.first_divergence["layer"] == "self_attn"
    assert "packing" in r.first_divergence["hint"]


def test_transposed_conv_kernel_not_flipped_names_the_layer():
    tm, nm = unet.torch_model(), build_abstract(lambda: unet.nnx_model(nnx.Rngs(0)))
    x = RNG.standard_normal((1, 1, 8, 8)).astype(np.float32)
    convert(tm, nm, inputs=[x])
    w = tm.up2.weight.detach().numpy()  # (I, O, kH, kW) moved without the flip
    nm.up2.kernel[...] = jnp.asarray(w.transpose(2, 3, 0, 1))
    r = check(tm, nm, [x], load=False)
    assert not r.ok
    assert r.first_divergence["layer"] == "up2"
    assert "flip" in r.first_divergence["hint"]

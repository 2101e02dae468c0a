"""Layer types beyond the reference architectures: grouped/dilated Conv1d, Conv3d, GroupNorm, RMSNorm,
GRU and Elman RNN, transposed convs with transpose_kernel, Flax's one-bias LSTM cell, and the mapping."""

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("flax")

import jax  # noqa: E402
import torch  # noqa: E402
from flax import nnx  # noqa: E402
from torch import nn  # noqa: E402

from diptych.errors import DiptychError  # noqa: E402
from diptych.port import check, convert  # noqa: E402
from diptych.port import nnx_layers as L  # noqa: E402

RNG = np.random.default_rng(3)


class TConv1d(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 6, 3, padding=2, dilation=2, groups=2)
        self.gn = nn.GroupNorm(2, 6)
        self.fc = nn.Linear(6 * 10, 3)

    def forward(self, x):  # (B, 4, 10)
        return self.fc(torch.tanh(self.gn(self.conv(x))).flatten(1))


class JConv1d(nnx.Module):
    def __init__(self, rngs):
        self.conv = nnx.Conv(4, 6, (3,), padding=2, kernel_dilation=2, feature_group_count=2, rngs=rngs)
        self.gn = nnx.GroupNorm(6, num_groups=2, epsilon=1e-5, rngs=rngs)
        self.fc = nnx.Linear(6 * 10, 3, rngs=rngs)

    def __call__(self, x):  # (B, 10, 4)
        return self.fc(jax.numpy.tanh(self.gn(self.conv(x))).reshape(len(x), -1))


class TConv3d(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(2, 3, 3, padding=1)
        self.up = nn.ConvTranspose3d(3, 2, 2, stride=2)

    def forward(self, x):  # (B, 2, D, H, W)
        return self.up(torch.relu(self.conv(x)))


class JConv3d(nnx.Module):
    def __init__(self, rngs):
        self.conv = nnx.Conv(2, 3, (3, 3, 3), padding=1, rngs=rngs)
        self.up = nnx.ConvTranspose(3, 2, (2, 2, 2), strides=2, padding="VALID", transpose_kernel=True, rngs=rngs)

    def __call__(self, x):
        return self.up(jax.nn.relu(self.conv(x)))


class TSeq(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.embed = nn.Embedding(11, 6)
        self.rnn = (nn.GRU if kind == "gru" else nn.RNN)(6, 5, batch_first=True)
        self.norm = nn.RMSNorm(5, eps=1e-6)
        self.out = nn.Linear(5, 4)

    def forward(self, ids):
        return self.out(self.norm(self.rnn(self.embed(ids))[0]))


class JSeq(nnx.Module):
    def __init__(self, cell, rngs):
        self.embed = nnx.Embed(11, 6, rngs=rngs)
        self.rnn = nnx.RNN(cell(6, 5, rngs=rngs))
        self.norm = nnx.RMSNorm(5, epsilon=1e-6, rngs=rngs)
        self.out = nnx.Linear(5, 4, rngs=rngs)

    def __call__(self, ids):
        return self.out(self.norm(self.rnn(self.embed(ids))))


@pytest.mark.parametrize(
    "make,x",
    [
        (lambda: (TConv1d(), JConv1d(nnx.Rngs(0))), RNG.standard_normal((3, 4, 10)).astype(np.float32)),
        pytest.param(
            lambda: (TConv3d(), JConv3d(nnx.Rngs(0))),
            RNG.standard_normal((2, 2, 4, 4, 4)).astype(np.float32),
            marks=pytest.mark.full,  # (seconds of XLA compilation: the full tier)
        ),
        pytest.param(
            lambda: (TSeq("gru"), JSeq(L.GRUCell, nnx.Rngs(0))), RNG.integers(0, 11, (2, 6)), marks=pytest.mark.full
        ),
        (lambda: (TSeq("rnn"), JSeq(L.RNNCell, nnx.Rngs(0))), RNG.integers(0, 11, (2, 6))),
    ],
    ids=["conv1d-groups-dilation-groupnorm", "conv3d-convtranspose3d", "gru-rmsnorm", "rnn"],
)
def test_layer_types_agree_with_training_steps(make, x):
    tm, nm = make()
    r = check(tm, nm, [x], train=True, steps=3)
    assert r.ok, r.worst()


def test_flax_one_bias_lstm_agrees_forward_but_not_after_a_step():
    class T(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(3, 4, batch_first=True)

        def forward(self, x):
            return self.lstm(x)[0]

    class J(nnx.Module):
        def __init__(self, rngs):
            self.lstm = nnx.RNN(nnx.OptimizedLSTMCell(3, 4, rngs=rngs))

        def __call__(self, x):
            return self.lstm(x)

    x = RNG.standard_normal((2, 5, 3)).astype(np.float32)
    r = check(T(), J(nnx.Rngs(0)), [x])  # forward and gradients: the summed bias is exact
    assert r.ok, r.worst()
    r = check(T(), J(nnx.Rngs(0)), [x], steps=1)  # each torch step moves b_ih + b_hh twice as far
    assert not r.ok
    assert r.first_divergence["layer"] == "lstm.l0" and "one bias" in r.first_divergence["hint"]


def test_mapping_errors_list_candidates_and_explicit_mapping_wins():
    class T(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = nn.Linear(4, 4)

        def forward(self, x):
            return self.b(self.a(x))

    class J(nnx.Module):
        def __init__(self, rngs, n=2):
            self.first = nnx.Linear(4, 4, rngs=rngs)
            if n == 2:
                self.second = nnx.Linear(4, 4, rngs=rngs)
            self.third = nnx.Linear(4, 5, rngs=rngs)

        def __call__(self, x):
            return self.third(self.second(self.first(x)))

    tm, nm = T(), J(nnx.Rngs(0))
    with pytest.raises(DiptychError, match="candidates") as e:
        convert(tm, nm)  # 2 torch Linears, 3 NNX ones: b has no unique partner by order
    assert "'second'" in str(e.value) or "'first'" in str(e.value)

    class J3(nnx.Module):
        def __init__(self, rngs):
            self.x1 = nnx.Linear(4, 4, rngs=rngs)
            self.x2 = nnx.Linear(4, 4, rngs=rngs)

        def __call__(self, x):
            return self.x1(self.x2(x))  # runs x2 first

    tm, nm = T(), J3(nnx.Rngs(0))
    x = RNG.standard_normal((2, 4)).astype(np.float32)
    assert convert(tm, nm, inputs=[x]) == {"a": "x2", "b": "x1"}  # execution order, not names
    assert convert(tm, nm, {"a": "x1", "b": "x2"}) == {"a": "x1", "b": "x2"}  # explicit wins
    assert np.array_equal(np.asarray(nm.x1.kernel[...]), tm.a.weight.detach().numpy().T)

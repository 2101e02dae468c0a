"""The attention pitfalls of issue #26 as deliberately wrong ports: check() fails, names the attention layer,
and its hint names the mistake: mask polarity, batch_first, the packed in_proj_weight."""

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("flax")

import jax.numpy as jnp  # noqa: E402
import torch  # noqa: E402
from flax import nnx  # noqa: E402
from torch import nn  # noqa: E402

from diptych.port import check  # noqa: E402
from diptych.port._nnx import build_abstract  # noqa: E402

pytestmark = pytest.mark.full  # the full tier: the port pitfalls

E, HEADS, T, B = 16, 4, 5, 3
X = np.random.default_rng(2).standard_normal((B, T, E)).astype(np.float32)


class TorchAttention(nn.Module):
    """Self-attention whose last key is padding: a boolean mask, True where attention is blocked."""

    def __init__(self, batch_first=True, masked=True):
        super().__init__()
        self.attn = nn.MultiheadAttention(E, HEADS, batch_first=batch_first)
        self.batch_first, self.masked = batch_first, masked

    def forward(self, x):
        if not self.masked:
            return self.attn(x, x, x, need_weights=False)[0]
        t = x.shape[1] if self.batch_first else x.shape[0]
        blocked = torch.zeros(t, t, dtype=torch.bool)
        blocked[:, -1] = True
        return self.attn(x, x, x, attn_mask=blocked, need_weights=False)[0]


class NNXAttention(nnx.Module):
    def __init__(self, rngs, *, flip_mask=True, swap=True, masked=True):
        self.attn = nnx.MultiHeadAttention(HEADS, E, decode=False, rngs=rngs)
        self.flip_mask, self.swap, self.masked = flip_mask, swap, masked

    def __call__(self, x):
        x = jnp.swapaxes(x, 0, 1) if self.swap else x
        t = x.shape[1]
        blocked = jnp.zeros((t, t), bool).at[:, -1].set(True)
        mask = (~blocked if self.flip_mask else blocked) if self.masked else None
        y = self.attn(x, mask=mask)
        return jnp.swapaxes(y, 0, 1) if self.swap else y


def _nnx(**kw):
    return build_abstract(lambda: NNXAttention(nnx.Rngs(0), **kw))


def test_the_right_port_passes():
    torch.manual_seed(0)
    assert check(TorchAttention(batch_first=False), _nnx(), [X.transpose(1, 0, 2)]).ok


def test_mask_polarity_is_named():
    torch.manual_seed(0)
    r = check(TorchAttention(), _nnx(flip_mask=False, swap=False), [X])
    assert not r.ok and r.first_divergence["layer"] == "attn"
    assert "mask polarity" in r.first_divergence["hint"] and "~mask" in r.first_divergence["hint"]


def test_batch_first_is_named():
    torch.manual_seed(0)
    r = check(TorchAttention(batch_first=False, masked=False), _nnx(swap=False, masked=False), [X.transpose(1, 0, 2)])
    assert not r.ok and r.first_divergence["layer"] == "attn"
    assert "batch_first" in r.first_divergence["hint"] and "swapaxes" in r.first_divergence["hint"]


def test_packed_in_proj_weight_is_named():
    torch.manual_seed(0)
    tm, nm = TorchAttention(), _nnx(swap=False)
    w = tm.attn.in_proj_weight.detach().numpy()
    for name, block in zip(("query", "key", "value"), np.split(w, 3)):  # a hand conversion that forgot .T
        getattr(nm.attn, name).kernel.set_value(jnp.asarray(block.reshape(E, HEADS, E // HEADS)))
        getattr(nm.attn, name).bias.set_value(jnp.zeros((HEADS, E // HEADS)))
    nm.attn.out.kernel.set_value(jnp.asarray(tm.attn.out_proj.weight.detach().numpy().T.reshape(HEADS, E // HEADS, E)))
    nm.attn.out.bias.set_value(jnp.asarray(tm.attn.out_proj.bias.detach().numpy()))
    with torch.no_grad():
        tm.attn.in_proj_bias.zero_()
    r = check(tm, nm, [X], load=False)
    assert not r.ok and r.first_divergence["layer"] == "attn"
    hint = r.first_divergence["hint"]
    assert "in_proj_weight" in hint and "query, key and value kernels" in hint and "not W.T" in hint

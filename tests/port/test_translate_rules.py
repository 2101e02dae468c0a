"""Every rule family of `port translate`, each in a small model that must translate and pass the check in
training mode (the full tier: each check compiles for seconds). The models are written to reach the rules
the reference models do not: norms, pooling, activations, shape ops and attention masks."""

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("flax")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from diptych.port import translate  # noqa: E402

pytestmark = pytest.mark.full


class Maps(nn.Module):
    """Convolutions and norms on maps: groups, dilation, padding="same", GroupNorm, BatchNorm1d on (B, C, L),
    ConvTranspose1d, average and adaptive max pooling, RMSNorm, channel cat, keepdim reductions."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding="same", dilation=2)
        self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=4)
        self.gn = nn.GroupNorm(2, 8)
        self.pool = nn.AvgPool2d(2)
        self.amax = nn.AdaptiveMaxPool2d((2, 2))
        self.conv1d = nn.Conv1d(16, 6, 3, padding=1)
        self.bn1d = nn.BatchNorm1d(6, momentum=0.2)
        self.up = nn.ConvTranspose1d(6, 4, 4, stride=2, padding=1)
        self.rms = nn.RMSNorm(32)
        self.fc = nn.Linear(32, 5)

    def forward(self, x):  # (B, 3, 8, 8)
        x = F.elu(self.gn(self.grouped(F.leaky_relu(self.conv(x), 0.1))))
        x = torch.cat([self.pool(x), F.avg_pool2d(x, 2)], dim=1)  # (B, 16, 4, 4)
        x = x - x.mean(dim=(2, 3), keepdim=True)
        x = self.amax(x).flatten(2)  # (B, 16, 4)
        y = self.up(torch.sigmoid(self.bn1d(self.conv1d(x))))  # (B, 4, 8)
        return self.fc(self.rms(torch.tanh(y.flatten(1))))


class Shapes(nn.Module):
    """Activations and shape operations: softmax, log-softmax, chunk, stack, squeeze/unsqueeze, expand,
    slices, sum, amax, matmul, einsum, where, masked_fill, clamp, a Parameter and size arithmetic."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(12, 12)
        self.scale = nn.Parameter(torch.ones(1, 1, 6))
        self.out = nn.Linear(6, 3)

    def forward(self, x):  # (B, T, 12)
        b, t, c = x.shape
        h = self.fc(x)
        a, g = h.chunk(2, dim=-1)  # (B, T, 6) each
        h = torch.stack([a, torch.sigmoid(g)], dim=1).sum(1)  # (B, T, 6)
        w = F.softmax(h @ h.transpose(1, 2) / (c // 2) ** 0.5, dim=-1)  # (B, T, T)
        h = torch.einsum("bts,bsd->btd", w, h) * self.scale.expand(b, t, -1)
        h = torch.where(h > 0, h, 0.1 * h).masked_fill(h.abs() > 5, 0.0).clamp(-3, 3)
        top = h.amax(dim=1, keepdim=True).squeeze(1).unsqueeze(-1)  # (B, 6, 1)
        return F.log_softmax(self.out(h[:, 1:, :] + top.transpose(1, 2)), dim=-1)


class Masks(nn.Module):
    """Attention with masks both ways: nn.MultiheadAttention (batch_first=False) with a boolean attn_mask and
    key_padding_mask; scaled_dot_product_attention with a boolean and an additive mask; an Embedding with a
    padding_idx; a 2-layer bidirectional GRU, time-major."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(11, 16, padding_idx=0)
        self.mha = nn.MultiheadAttention(16, 4)
        self.qkv = nn.Linear(16, 48)
        self.gru = nn.GRU(16, 8, num_layers=2, bidirectional=True)
        self.head = nn.Linear(16, 4)

    def forward(self, ids):  # (B, T) int
        b, t = ids.shape
        x = self.embed(ids).transpose(0, 1)  # (T, B, D)
        blocked = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)  # True: blocked
        pad = ids == 0
        pad[:, 0] = False  # every query keeps a key
        x = x + self.mha(x, x, x, attn_mask=blocked, key_padding_mask=pad, need_weights=False)[0]
        q, k, v = self.qkv(x.transpose(0, 1)).view(b, t, 3, 4, 4).permute(2, 0, 3, 1, 4).unbind(0)
        allowed = ~blocked  # True: attended, as SDPA reads it
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        bias = torch.zeros(t, t).masked_fill(blocked, float("-inf"))
        y = y + F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B, H, T, Dh)
        y = y.transpose(1, 2).reshape(b, t, 16).transpose(0, 1)  # (T, B, D)
        h, _ = self.gru(y)
        return self.head(h[-1])  # (B, classes)


CASES = {
    "maps": (Maps, np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(np.float32)),
    "shapes": (Shapes, np.random.default_rng(1).standard_normal((2, 5, 12)).astype(np.float32)),
    "masks": (Masks, np.random.default_rng(2).integers(0, 11, (3, 6)).astype(np.int64)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_rule_family_translates_and_passes(name):
    cls, x = CASES[name]
    tr = translate(cls, [x], train=True, steps=3)
    assert tr.ok, (tr.report.worst(), tr.report.first_divergence)

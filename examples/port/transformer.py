"""A Transformer encoder block (Vaswani et al. 2017; the post-norm layout of torch's
``nn.TransformerEncoderLayer``) with GELU and dropout off, in both frameworks.

NNX: ``nnx.MultiHeadAttention`` (separate q/k/v projections, heads split in the kernel), ``nnx.LayerNorm``
with torch's epsilon (Flax's default is 1e-6) and the exact GELU (``jax.nn.gelu`` defaults to tanh).
"""

from __future__ import annotations

D_MODEL, HEADS, D_FF = 16, 4, 32


def torch_model():
    import torch
    from torch import nn

    class EncoderBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.self_attn = nn.MultiheadAttention(D_MODEL, HEADS, dropout=0.0, batch_first=True)
            self.norm1 = nn.LayerNorm(D_MODEL)
            self.linear1 = nn.Linear(D_MODEL, D_FF)
            self.activation = nn.GELU()
            self.linear2 = nn.Linear(D_FF, D_MODEL)
            self.norm2 = nn.LayerNorm(D_MODEL)

        def forward(self, x):  # (B, T, D)
            x = self.norm1(x + self.self_attn(x, x, x, need_weights=False)[0])
            return self.norm2(x + self.linear2(self.activation(self.linear1(x))))

    del torch
    return EncoderBlock()


def nnx_model(rngs, *, epsilon=1e-5, approximate_gelu=False):
    import jax
    from flax import nnx

    class EncoderBlock(nnx.Module):
        def __init__(self, rngs):
            self.self_attn = nnx.MultiHeadAttention(HEADS, D_MODEL, decode=False, rngs=rngs)
            self.norm1 = nnx.LayerNorm(D_MODEL, epsilon=epsilon, rngs=rngs)
            self.linear1 = nnx.Linear(D_MODEL, D_FF, rngs=rngs)
            self.linear2 = nnx.Linear(D_FF, D_MODEL, rngs=rngs)
            self.norm2 = nnx.LayerNorm(D_MODEL, epsilon=epsilon, rngs=rngs)

        def __call__(self, x):  # (B, T, D)
            x = self.norm1(x + self.self_attn(x))
            h = jax.nn.gelu(self.linear1(x), approximate=approximate_gelu)
            return self.norm2(x + self.linear2(h))

    return EncoderBlock(rngs)

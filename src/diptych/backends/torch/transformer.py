"""PyTorch transformers for :mod:`diptych.transformer_specs`: a character GPT and a ViT.

Attention is ``F.scaled_dot_product_attention``, which picks a fused kernel (flash or cuDNN on a GPU,
a fused CPU kernel here). Attribute names are the canonical weight names, so ``state_dict()`` is the
canonical weights dict. The GPT's output layer is its token embedding (``F.linear(x, embed.weight)``):
one tensor, one name.

Generation keeps a preallocated key/value cache (:class:`KVCache`): ``forward(ids, cache, pos)``
writes the new keys and values at positions ``[pos, pos + T)`` and attends over ``[0, pos + T)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from diptych.transformer_specs import GELU_APPROXIMATE, INIT_STD, LN_EPS, GPTSpec, ViTSpec


@dataclass
class KVCache:
    """Keys and values of every layer, ``(layers, B, heads, context, head_dim)`` each, allocated once."""

    k: torch.Tensor
    v: torch.Tensor

    @classmethod
    def empty(cls, spec: GPTSpec, batch: int, device=None, dtype=torch.float32) -> "KVCache":
        shape = (spec.layers, batch, spec.heads, spec.context, spec.head_dim())
        return cls(torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype))


class Attention(nn.Module):
    def __init__(self, width: int, heads: int, causal: bool):
        super().__init__()
        self.heads, self.causal = heads, causal
        self.qkv = nn.Linear(width, 3 * width, bias=False)  # no key bias: see diptych.transformer_specs
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0, pos: int = 0) -> torch.Tensor:
        b, t, d = x.shape  # (B, T, D)
        q, k, v = self.qkv(x).split(d, dim=-1)  # 3 x (B, T, D)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))  # (B, H, T, Dh)
        if cache is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)  # (B, H, T, Dh)
        else:
            cache.k[layer, :, :, pos : pos + t] = k
            cache.v[layer, :, :, pos : pos + t] = v
            k, v = cache.k[layer, :, :, : pos + t], cache.v[layer, :, :, : pos + t]  # (B, H, pos + T, Dh)
            # Query i sits at position pos + i and may see keys 0 .. pos + i. (is_causal=True would align
            # the mask to the top left, which is wrong once the keys outnumber the queries.)
            allowed = torch.arange(pos + t, device=x.device)[None, :] <= pos + torch.arange(t, device=x.device)[:, None]
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)  # (B, H, T, Dh)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))  # (B, T, D)


class MLP(nn.Module):
    def __init__(self, width: int, ratio: int):
        super().__init__()
        self.fc = nn.Linear(width, ratio * width)
        self.proj = nn.Linear(ratio * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x), approximate=GELU_APPROXIMATE))  # (B, T, D)


class Block(nn.Module):
    """Pre-norm: ``x + attn(ln1(x))``, then ``x + mlp(ln2(x))``."""

    def __init__(self, width: int, heads: int, mlp_ratio: int, causal: bool):
        super().__init__()
        self.ln1 = nn.LayerNorm(width, eps=LN_EPS)
        self.attn = Attention(width, heads, causal)
        self.ln2 = nn.LayerNorm(width, eps=LN_EPS)
        self.mlp = MLP(width, mlp_ratio)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0, pos: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cache, layer, pos)  # (B, T, D)
        return x + self.mlp(self.ln2(x))


def _init(module: nn.Module, layers: int) -> None:
    """GPT-2's initialization: N(0, 0.02) weights and embeddings, zero biases, and the residual
    projections (attn.proj, mlp.proj) at 0.02 / sqrt(2 * layers), so the residual stream's variance
    does not grow with depth."""
    for name, p in module.named_parameters():
        if name.endswith("bias"):
            nn.init.zeros_(p)
        elif ".ln" in name or name.startswith("ln"):
            nn.init.ones_(p)
        elif name.endswith("proj.weight"):
            nn.init.normal_(p, 0.0, INIT_STD / math.sqrt(2 * layers))
        else:
            nn.init.normal_(p, 0.0, INIT_STD)


class GPT(nn.Module):
    """ids ``(B, T)`` -> next-id logits ``(B, T, V)``; ``T <= context``."""

    def __init__(self, spec: GPTSpec):
        super().__init__()
        self.spec = spec
        self.embed = nn.Embedding(spec.vocab, spec.width)
        self.pos_embed = nn.Embedding(spec.context, spec.width)
        self.blocks = nn.ModuleList(Block(spec.width, spec.heads, spec.mlp_ratio, True) for _ in range(spec.layers))
        self.ln_f = nn.LayerNorm(spec.width, eps=LN_EPS)
        _init(self, spec.layers)

    def forward(self, ids: torch.Tensor, cache: KVCache | None = None, pos: int = 0) -> torch.Tensor:
        t = ids.shape[1]
        positions = torch.arange(pos, pos + t, device=ids.device)  # (T,)
        x = self.embed(ids.long()) + self.pos_embed(positions)  # (B, T, D)
        for layer, block in enumerate(self.blocks):
            x = block(x, cache, layer, pos)
        return F.linear(self.ln_f(x), self.embed.weight)  # (B, T, V): tied to the token embedding


class ViT(nn.Module):
    """images ``(B, H, W)`` or ``(B, C, H, W)`` -> logits ``(B, classes)`` from the class token."""

    def __init__(self, spec: ViTSpec):
        super().__init__()
        self.spec = spec
        d = spec.width
        self.patch = nn.Conv2d(spec.in_channels, d, spec.patch, stride=spec.patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + spec.num_patches(), d))
        self.blocks = nn.ModuleList(Block(d, spec.heads, spec.mlp_ratio, False) for _ in range(spec.layers))
        self.ln_f = nn.LayerNorm(d, eps=LN_EPS)
        self.head = nn.Linear(d, spec.num_classes)
        _init(self, spec.layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(1) if x.dim() == 3 else x  # (B, C, H, W)
        x = self.patch(x).flatten(2).transpose(1, 2)  # (B, N, D): patches in row-major order
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed  # (B, 1 + N, D)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x[:, 0]))  # (B, classes)

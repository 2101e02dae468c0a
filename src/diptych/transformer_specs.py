"""Transformer specs: a decoder-only character GPT and a Vision Transformer, framework-neutral.

Both twins build the same pre-norm blocks from these (:mod:`diptych.backends.torch.transformer`,
:mod:`diptych.backends.jax.transformer`). What must agree between the frameworks to the last bit of
meaning is fixed here, once: the GELU (the tanh approximation, GPT-2's) and the LayerNorm epsilon
(torch's default; Flax's own default is 1e-6, so the JAX twin passes this one explicitly).

One block, on activations ``x`` ``(B, T, D)``::

    x = x + proj(attention(split_heads(qkv(ln1(x)))))    # causal for the GPT, full for the ViT
    x = x + mlp.proj(gelu(mlp.fc(ln2(x))))                # D -> mlp_ratio * D -> D

The query/key/value projection has no bias. Why: a key bias adds the same ``q . b_k`` to every score of
a query, which softmax ignores, so its gradient is exactly zero; float32 rounding makes that zero a
``+-1e-10`` of either sign, and Adam (which divides by the gradient's own scale) turns it into full-size
steps in a random direction, different in each twin and each run. (Whisper drops the key bias for the
same reason; nanoGPT and LLaMA drop all of them.)

Canonical (PyTorch ``state_dict``) names of block ``i``: ``blocks.i.ln1.{weight,bias}``,
``blocks.i.attn.qkv.weight`` ``(3D, D)`` (query, key, value stacked in that order),
``blocks.i.attn.proj``, ``blocks.i.ln2``, ``blocks.i.mlp.fc`` ``(mlp_ratio*D, D)``, ``blocks.i.mlp.proj``.

    >>> GPTSpec(vocab=65).num_params()
    808320
    >>> ViTSpec().describe()
    'ViT patch 4 (49 patches) 4x64, 4 heads, mlp 128'
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from diptych.specs import TokenLM, _count, _Spec

GELU_APPROXIMATE = "tanh"  # torch: F.gelu(x, approximate="tanh"); JAX: jax.nn.gelu(x, approximate=True)
LN_EPS = 1e-5  # torch.nn.LayerNorm's default; nnx.LayerNorm(epsilon=LN_EPS) in the JAX twin
INIT_STD = 0.02  # GPT-2's: weights and embeddings ~ N(0, 0.02); residual projections 0.02 / sqrt(2 * layers)


def block_shapes(layers: int, width: int, mlp_ratio: int) -> dict[str, tuple[int, ...]]:
    d, m = width, mlp_ratio * width
    shapes: dict[str, tuple[int, ...]] = {}
    for i in range(layers):
        p = f"blocks.{i}."
        shapes |= {p + "ln1.weight": (d,), p + "ln1.bias": (d,)}
        shapes |= {p + "attn.qkv.weight": (3 * d, d)}
        shapes |= {p + "attn.proj.weight": (d, d), p + "attn.proj.bias": (d,)}
        shapes |= {p + "ln2.weight": (d,), p + "ln2.bias": (d,)}
        shapes |= {p + "mlp.fc.weight": (m, d), p + "mlp.fc.bias": (m,)}
        shapes |= {p + "mlp.proj.weight": (d, m), p + "mlp.proj.bias": (d,)}
    return shapes | {"ln_f.weight": (d,), "ln_f.bias": (d,)}


def block_flops(tokens: int, width: int, mlp_ratio: int) -> tuple[int, int]:
    """``(matmul FLOPs, attention FLOPs)`` of one block's forward over ``tokens`` positions: the four
    weight matmuls ``2 * T * D * (3D + D + 2 * mlp_ratio * D)``, and attention's two ``(T, T)`` products,
    ``Q K^T`` and ``A V``, ``2 * 2 * T^2 * D`` (counted in full, causal or not, as the MFU literature does)."""
    t, d = tokens, width
    return 2 * t * d * (4 * d + 2 * mlp_ratio * d), 4 * t * t * d


@dataclass(frozen=True)
class _TransformerSpec(_Spec):
    def validate(self) -> None:
        """Refuse a model that cannot be built, in one line (heads must divide the width)."""
        from diptych.errors import DiptychError

        for key in ("layers", "heads", "width", "mlp_ratio"):
            if getattr(self, key) < 1:
                raise DiptychError(f"{key} must be at least 1, got {getattr(self, key)}")
        if self.width % self.heads:
            raise DiptychError(
                f"heads={self.heads} does not divide width={self.width}; each head gets width/heads features"
            )

    def head_dim(self) -> int:
        return self.width // self.heads


@dataclass(frozen=True)
class GPTSpec(TokenLM, _TransformerSpec):
    """Decoder-only character transformer: token + learned position embeddings, ``layers`` pre-norm
    causal blocks, a final LayerNorm, and logits through the token embedding itself (tied: no separate
    output matrix). Input: ids ``(B, T)`` with ``T <= context``; output: next-id logits ``(B, T, V)``.

    The vocabulary comes from the corpus (``vocab=0`` in the registry, filled by :meth:`with_vocab`).
    Canonical names: ``embed.weight`` ``(V, D)``, ``pos_embed.weight`` ``(context, D)``, the blocks
    (module docstring), ``ln_f``.
    """

    layers: int = 4
    heads: int = 4
    width: int = 128
    context: int = 64
    mlp_ratio: int = 4
    vocab: int = 0
    kind: str = "gpt"
    decodes_with_cache = True

    @property
    def seq_len(self) -> int:
        """Training windows are one context long (the data path shared with :class:`CharLMSpec`)."""
        return self.context

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {"embed.weight": (self.vocab, self.width), "pos_embed.weight": (self.context, self.width)}
        return shapes | block_shapes(self.layers, self.width, self.mlp_ratio)

    def num_params(self) -> int:
        return _count(self.param_shapes())

    def describe(self) -> str:
        v = self.vocab or "V"
        return f"GPT {self.layers}x{self.width}, {self.heads} heads, context {self.context}, vocab {v} (tied)"


@dataclass(frozen=True)
class ViTSpec(_TransformerSpec):
    """Vision Transformer: non-overlapping ``patch x patch`` patches embedded by a strided conv, a class
    token in front, learned positions, ``layers`` pre-norm blocks (full attention), a final LayerNorm, and a
    Linear head on the class token. Input ``(B, H, W)`` (one channel) or ``(B, C, H, W)``.

    Canonical names: ``patch.{weight (D, C, P, P), bias}``, ``cls_token`` ``(1, 1, D)``, ``pos_embed``
    ``(1, 1 + N, D)``, the blocks, ``ln_f``, ``head.{weight (classes, D), bias}``.
    """

    in_size: int = 28
    patch: int = 4
    layers: int = 4
    heads: int = 4
    width: int = 64
    mlp_ratio: int = 2
    in_channels: int = 1
    num_classes: int = 10
    kind: str = "vit"
    sized_by_data: bool = False  # True: input size, channels and classes come from the data (own images)

    def validate(self) -> None:
        super().validate()
        from diptych.errors import DiptychError

        if not 1 <= self.patch <= self.in_size:
            raise DiptychError(f"patch={self.patch} must be between 1 and the image side, {self.in_size}")

    def grid(self) -> int:
        """Patches per side (a border narrower than a patch is dropped, as a stride-P conv drops it)."""
        return self.in_size // self.patch

    def num_patches(self) -> int:
        return self.grid() ** 2

    def sized_like(self, params: dict) -> "ViTSpec":
        if not self.sized_by_data or "patch.weight" not in params or "head.weight" not in params:
            return self
        spec = dataclasses.replace(
            self, in_channels=params["patch.weight"].shape[1], num_classes=params["head.weight"].shape[0]
        )
        tokens = params["pos_embed"].shape[1] - 1 if "pos_embed" in params else spec.num_patches()
        fits = (dataclasses.replace(spec, in_size=n) for n in range(1, 1025))
        return next((s for s in fits if s.num_patches() == tokens), spec)

    def input_shape(self) -> tuple[int, ...]:
        return (self.in_size, self.in_size)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        d, p = self.width, self.patch
        shapes = {"patch.weight": (d, self.in_channels, p, p), "patch.bias": (d,), "cls_token": (1, 1, d)}
        shapes |= {"pos_embed": (1, 1 + self.num_patches(), d)}
        shapes |= block_shapes(self.layers, self.width, self.mlp_ratio)
        return shapes | {"head.weight": (self.num_classes, d), "head.bias": (self.num_classes,)}

    def num_params(self) -> int:
        return _count(self.param_shapes())

    def describe(self) -> str:
        return (
            f"ViT patch {self.patch} ({self.num_patches()} patches) {self.layers}x{self.width}, "
            f"{self.heads} heads, mlp {self.mlp_ratio * self.width}"
        )

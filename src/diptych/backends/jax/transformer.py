"""Flax NNX transformers for :mod:`diptych.transformer_specs`: a character GPT and a ViT.

Attention is ``jax.nn.dot_product_attention`` (``(B, T, heads, head_dim)`` layout), which lowers to
cuDNN's fused kernel on a GPU where it applies (:data:`ATTENTION`) and to XLA elsewhere. Dense
kernels are ``(in, out)``; :mod:`diptych.backends.jax.weights` transposes them to the canonical layout.
The GPT's output layer is its token embedding (``embed.attend``): tied, as in the torch twin.

Generation keeps the key/value cache as a pytree passed in and out of one jitted decode step:
``__call__(ids, cache, pos)`` writes the new keys and values at ``pos`` with
``lax.dynamic_update_slice`` and attends over the whole fixed-size cache through a mask, so ``pos``
may be a traced value and the step compiles once for every position.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from diptych.transformer_specs import GELU_APPROXIMATE, INIT_STD, LN_EPS, GPTSpec, ViTSpec

# "xla" everywhere; set to "cudnn" (or None: let JAX choose) where that kernel applies (see select_attention).
ATTENTION: dict = {"implementation": None}


def select_attention(platform: str) -> str | None:
    """The ``implementation`` for ``jax.nn.dot_product_attention``: cuDNN's fused kernel on a GPU when it
    compiles for a small probe, else XLA's (``None`` lets JAX pick XLA on a CPU)."""
    if platform != "gpu":
        ATTENTION["implementation"] = None
        return None
    q = jnp.zeros((1, 64, 2, 64), jnp.bfloat16)
    try:
        jax.jit(lambda q: jax.nn.dot_product_attention(q, q, q, is_causal=True, implementation="cudnn"))(q)
        ATTENTION["implementation"] = "cudnn"
    except Exception:  # noqa: BLE001 - no cuDNN, an old one, or a shape it refuses: XLA's kernel works everywhere
        ATTENTION["implementation"] = "xla"
    return ATTENTION["implementation"]


def empty_cache(spec: GPTSpec, batch: int, dtype=jnp.float32) -> dict:
    """Keys and values of every layer, ``(layers, B, context, heads, head_dim)`` each: zeros, allocated once."""
    shape = (spec.layers, batch, spec.context, spec.heads, spec.head_dim())
    return {"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)}


@functools.partial(jax.jit, static_argnums=0, donate_argnums=3)
def extend(graphdef, params, ids: jax.Array, cache: dict, pos: jax.Array):
    """Pure: ``(logits (B, T, V), cache)`` for ``ids`` ``(B, T)`` written at positions ``pos ..`` of ``cache``.
    Jitted once per ``(graphdef, T)``: the decode step (``T = 1``) compiles once for a whole generation."""
    return nnx.merge(graphdef, params)(ids, cache, pos)


def _dense(fan_in: int, fan_out: int, std: float, rngs: nnx.Rngs, bias: bool = True) -> nnx.Linear:
    init = nnx.initializers.normal(std)
    zeros = nnx.initializers.zeros_init()
    return nnx.Linear(fan_in, fan_out, use_bias=bias, kernel_init=init, bias_init=zeros, rngs=rngs)


class Attention(nnx.Module):
    def __init__(self, width: int, heads: int, causal: bool, layers: int, *, rngs: nnx.Rngs):
        self.heads, self.causal = heads, causal
        self.qkv = _dense(width, 3 * width, INIT_STD, rngs, bias=False)  # no key bias: see transformer_specs
        self.proj = _dense(width, width, INIT_STD / (2 * layers) ** 0.5, rngs)

    def __call__(self, x: jax.Array, cache: dict | None = None, layer: int = 0, pos=0):
        b, t, d = x.shape  # (B, T, D)
        q, k, v = jnp.split(self.qkv(x), 3, axis=-1)  # 3 x (B, T, D)
        q, k, v = (z.reshape(b, t, self.heads, d // self.heads) for z in (q, k, v))  # (B, T, H, Dh)
        if cache is None:
            y = jax.nn.dot_product_attention(q, k, v, is_causal=self.causal, **ATTENTION)  # (B, T, H, Dh)
        else:
            at = (layer, 0, pos, 0, 0)
            cache = {
                "k": jax.lax.dynamic_update_slice(cache["k"], k[None].astype(cache["k"].dtype), at),
                "v": jax.lax.dynamic_update_slice(cache["v"], v[None].astype(cache["v"].dtype), at),
            }
            keys, values = cache["k"][layer], cache["v"][layer]  # (B, context, H, Dh)
            # Query i sits at position pos + i and sees keys 0 .. pos + i; later slots are empty.
            allowed = jnp.arange(keys.shape[1])[None, :] <= pos + jnp.arange(t)[:, None]  # (T, context)
            y = jax.nn.dot_product_attention(q, keys.astype(q.dtype), values.astype(q.dtype), mask=allowed)
        return self.proj(y.reshape(b, t, d)), cache  # (B, T, D)


class MLP(nnx.Module):
    def __init__(self, width: int, ratio: int, layers: int, *, rngs: nnx.Rngs):
        self.fc = _dense(width, ratio * width, INIT_STD, rngs)
        self.proj = _dense(ratio * width, width, INIT_STD / (2 * layers) ** 0.5, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.proj(jax.nn.gelu(self.fc(x), approximate=GELU_APPROXIMATE == "tanh"))  # (B, T, D)


class Block(nnx.Module):
    """Pre-norm: ``x + attn(ln1(x))``, then ``x + mlp(ln2(x))``."""

    def __init__(self, width: int, heads: int, mlp_ratio: int, causal: bool, layers: int, *, rngs: nnx.Rngs):
        self.ln1 = nnx.LayerNorm(width, epsilon=LN_EPS, rngs=rngs)
        self.attn = Attention(width, heads, causal, layers, rngs=rngs)
        self.ln2 = nnx.LayerNorm(width, epsilon=LN_EPS, rngs=rngs)
        self.mlp = MLP(width, mlp_ratio, layers, rngs=rngs)

    def __call__(self, x: jax.Array, cache: dict | None = None, layer: int = 0, pos=0):
        y, cache = self.attn(self.ln1(x), cache, layer, pos)
        x = x + y  # (B, T, D)
        return x + self.mlp(self.ln2(x)), cache


def _blocks(spec, causal: bool, rngs: nnx.Rngs) -> nnx.List:
    return nnx.List(
        [Block(spec.width, spec.heads, spec.mlp_ratio, causal, spec.layers, rngs=rngs) for _ in range(spec.layers)]
    )


class GPT(nnx.Module):
    """ids ``(B, T)`` -> next-id logits ``(B, T, V)``; with a ``cache``, returns ``(logits, cache)``."""

    def __init__(self, spec: GPTSpec, *, rngs: nnx.Rngs):
        self.spec = spec
        normal = nnx.initializers.normal(INIT_STD)
        self.embed = nnx.Embed(spec.vocab, spec.width, embedding_init=normal, rngs=rngs)
        self.pos_embed = nnx.Embed(spec.context, spec.width, embedding_init=normal, rngs=rngs)
        self.blocks = _blocks(spec, True, rngs)
        self.ln_f = nnx.LayerNorm(spec.width, epsilon=LN_EPS, rngs=rngs)

    def __call__(self, ids: jax.Array, cache: dict | None = None, pos=0):
        t = ids.shape[1]
        x = self.embed(ids) + self.pos_embed(pos + jnp.arange(t))  # (B, T, D)
        for layer, block in enumerate(self.blocks):
            x, cache = block(x, cache, layer, pos)
        logits = self.embed.attend(self.ln_f(x))  # (B, T, V): tied to the token embedding
        return logits if cache is None else (logits, cache)


class ViT(nnx.Module):
    """images ``(B, H, W)`` or ``(B, C, H, W)`` -> logits ``(B, classes)`` from the class token."""

    def __init__(self, spec: ViTSpec, *, rngs: nnx.Rngs):
        self.spec = spec
        d, p = spec.width, spec.patch
        self.patch = nnx.Conv(
            spec.in_channels,
            d,
            kernel_size=(p, p),
            strides=(p, p),
            padding="VALID",
            kernel_init=nnx.initializers.normal(INIT_STD),
            bias_init=nnx.initializers.zeros_init(),
            rngs=rngs,
        )
        self.cls_token = nnx.Param(INIT_STD * jax.random.normal(rngs.params(), (1, 1, d)))
        self.pos_embed = nnx.Param(INIT_STD * jax.random.normal(rngs.params(), (1, 1 + spec.num_patches(), d)))
        self.blocks = _blocks(spec, False, rngs)
        self.ln_f = nnx.LayerNorm(d, epsilon=LN_EPS, rngs=rngs)
        self.head = _dense(d, spec.num_classes, INIT_STD, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x[..., None] if x.ndim == 3 else jnp.moveaxis(x, 1, -1)  # (B, H, W, C)
        x = self.patch(x)  # (B, H/P, W/P, D)
        x = x.reshape(x.shape[0], -1, x.shape[-1])  # (B, N, D): patches in row-major order, as torch's
        cls = jnp.broadcast_to(self.cls_token[...], (x.shape[0], 1, x.shape[-1]))
        x = jnp.concatenate([cls, x], axis=1) + self.pos_embed[...]  # (B, 1 + N, D)
        for block in self.blocks:
            x, _ = block(x)
        return self.head(self.ln_f(x[:, 0]))  # (B, classes)

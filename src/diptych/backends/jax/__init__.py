"""The JAX twin: Flax NNX models, optax optimizers, pure jit-compiled steps."""

from diptych.backends.jax import augment, distributed, models, train, weights

__all__ = ["augment", "distributed", "models", "train", "weights"]

"""The JAX twin: Flax NNX models, optax optimizers, pure jit-compiled steps."""

from diptych.backends.jax import distributed, models, train, weights

__all__ = ["distributed", "models", "train", "weights"]

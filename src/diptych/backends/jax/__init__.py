"""The JAX twin: Flax NNX models, optax optimizers, pure jit-compiled steps."""

from diptych.backends.jax import augment, models, train, weights

__all__ = ["augment", "models", "train", "weights"]

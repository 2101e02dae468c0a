"""The JAX twin: Flax NNX models, optax optimizers, pure jit-compiled steps."""

from diptych.backends.jax import models, train, weights

__all__ = ["models", "train", "weights"]

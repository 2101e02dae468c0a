"""The JAX twin: Flax NNX models, optax optimizers, pure jit-compiled steps."""

from diptych.backends.jax import distributed

distributed.one_device_per_core()  # before any JAX computation: the device set is fixed at the first

from diptych.backends.jax import augment, models, ops, profile, train, weights  # noqa: E402

__all__ = ["augment", "distributed", "models", "ops", "profile", "train", "weights"]

"""diptych: every classic deep-learning task twice, in idiomatic PyTorch and idiomatic JAX.

>>> from diptych import RunConfig, train_and_evaluate
>>> record = train_and_evaluate(RunConfig("mnist1d-cnn", "jax"), "runs/demo")  # doctest: +SKIP
>>> record["test_accuracy"] >= 0.94  # 60 epochs: BENCHMARKS.md (Task results), not run here  # doctest: +SKIP
True
"""

__version__ = "0.1.0"

from diptych.allocator import keep_freed_memory  # noqa: E402

# First, before numpy or a framework starts threads: glibc applies it only to arenas made afterwards.
keep_freed_memory()

from diptych.driver import RunConfig, evaluate_weights, train_and_evaluate  # noqa: E402

__all__ = ["RunConfig", "evaluate_weights", "train_and_evaluate", "__version__"]

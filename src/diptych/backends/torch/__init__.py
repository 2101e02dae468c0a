"""The PyTorch twin: ``nn.Module`` models, ``torch.optim`` optimizers, eager (or compiled) steps."""

from diptych.backends import before_import

before_import("torch")  # OpenMP's wait policy, read once when torch loads (see before_import)

from diptych.backends.torch import augment, distributed, models, onnx, ops, profile, train, weights  # noqa: E402

__all__ = ["augment", "distributed", "models", "onnx", "ops", "profile", "train", "weights"]

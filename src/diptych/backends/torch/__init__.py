"""The PyTorch twin: ``nn.Module`` models, ``torch.optim`` optimizers, eager (or compiled) steps."""

from diptych.backends.torch import augment, distributed, models, onnx, train, weights

__all__ = ["augment", "distributed", "models", "onnx", "train", "weights"]

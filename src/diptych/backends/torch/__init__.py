"""The PyTorch twin: ``nn.Module`` models, ``torch.optim`` optimizers, eager (or compiled) steps."""

from diptych.backends.torch import augment, models, train, weights

__all__ = ["augment", "models", "train", "weights"]

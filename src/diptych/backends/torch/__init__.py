"""The PyTorch twin: ``nn.Module`` models, ``torch.optim`` optimizers, eager (or compiled) steps."""

from diptych.backends.torch import models, train, weights

__all__ = ["models", "train", "weights"]

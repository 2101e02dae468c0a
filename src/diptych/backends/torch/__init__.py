"""The PyTorch twin: ``nn.Module`` models, ``torch.optim`` optimizers, eager (or compiled) steps."""

from diptych.backends.torch import distributed, models, train, weights

__all__ = ["distributed", "models", "train", "weights"]

"""Operations the twins name alike (the JAX twin's ``ops.py`` writes its own with PyTorch's semantics)."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def max_pool(x: torch.Tensor, p: int) -> torch.Tensor:
    """Non-overlapping ``p`` max pool over the spatial axes of channels-first ``x`` ``(B, C, *spatial)``:
    floor mode, and in the backward the gradient goes to the first maximum of each window."""
    return (F.max_pool2d if x.ndim == 4 else F.max_pool1d)(x, p)  # (B, C, H/p, W/p) or (B, C, L/p)

"""Operations the twins name alike (the JAX twin's ``ops.py`` writes its own with PyTorch's semantics): here
they are PyTorch's own kernels, so the twins' model and augmentation code reads alike."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def max_pool(x: torch.Tensor, p: int) -> torch.Tensor:
    """Non-overlapping ``p`` max pool over the spatial axes of channels-first ``x`` ``(B, C, *spatial)``:
    floor mode, and in the backward the gradient goes to the first maximum of each window."""
    return (F.max_pool2d if x.ndim == 4 else F.max_pool1d)(x, p)  # (B, C, H/p, W/p) or (B, C, L/p)


def affine_grid(theta: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``(B, H, W, 2)`` source ``(x, y)`` of each output pixel of an ``H x W`` image: ``theta`` ``(B, 2, 3)`` times
    ``(u, v, 1)``, in normalized coordinates (``align_corners=False``: the image spans ``[-1, 1]`` edge to edge)."""
    return F.affine_grid(theta, [theta.shape[0], 1, h, w], align_corners=False)


def grid_sample(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Bilinear sampling of ``x`` ``(B, C, H, W)`` at ``grid`` ``(B, H', W', 2)``, zeros outside."""
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)  # (B, C, H', W')

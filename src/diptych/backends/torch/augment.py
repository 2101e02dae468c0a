"""Audio augmentation on device, torch twin: applies the parameters drawn by :mod:`diptych.data.augment`."""

from __future__ import annotations

import torch


def shift_time(x: torch.Tensor, shift: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """``out[b, :, t] = x[b, :, t - shift[b]]``, and ``fill`` ``(M, 1)`` where that is outside ``[0, T)``."""
    b, m, t = x.shape
    src = torch.arange(t, device=x.device)[None, :] - shift[:, None]  # (B, T) source frame
    inside = (src >= 0) & (src < t)  # (B, T)
    moved = x.gather(2, src.clamp(0, t - 1)[:, None, :].expand(b, m, t))  # (B, M, T)
    return torch.where(inside[:, None, :], moved, fill)


def warp_freq(x: torch.Tensor, lo: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``out[b, m] = (1 - w[b, m]) x[b, lo[b, m]] + w[b, m] x[b, lo[b, m] + 1]`` over the mel axis."""
    t = x.shape[-1]
    below = x.gather(1, lo[:, :, None].expand(-1, -1, t))  # (B, M, T)
    above = x.gather(1, (lo + 1)[:, :, None].expand(-1, -1, t))
    return below + w[:, :, None] * (above - below)


def apply(x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
    """Warp, shift, add noise in the mel-power domain, mask: normalized log-mel ``(B, M, T)`` in and out."""
    x = warp_freq(x, p["warp_lo"].long(), p["warp_w"])
    x = shift_time(x, p["shift"].long(), p["silence"])  # (B, M, T)
    power = torch.exp(x * p["std"] + p["mean"]) + p["noise"]  # (B, M, T) mel energy + noise
    x = (torch.log(power) - p["mean"]) / p["std"]
    return x * p["keep"]  # SpecAugment: masked cells become 0, the training mean

"""Augmentation on device, torch twin: applies the parameters drawn by :mod:`diptych.data.augment`
(audio: a normalized log-mel batch; images: an affine warp, erasing and mixing)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from diptych.backends.torch.ops import affine_grid, grid_sample


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


def apply_audio(x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
    """Warp, [colour,] shift, add noise in the mel-power domain, mask[, mix]: normalized log-mel ``(B, M, T)``."""
    x = warp_freq(x, p["warp_lo"].long(), p["warp_w"])
    if "eq" in p:  # a microphone's colouring: a smooth gain curve over the bands, (B, M, 1)
        x = x + p["eq"]
    x = shift_time(x, p["shift"].long(), p["silence"])  # (B, M, T)
    power = torch.exp(x * p["std"] + p["mean"]) + p["noise"]  # (B, M, T) mel energy + noise
    x = (torch.log(power) - p["mean"]) / p["std"]
    x = x * p["keep"]  # SpecAugment: masked cells become 0, the training mean
    if "perm" in p:  # mixup with another recording of the batch
        lam = p["lam"][:, None, None]  # (B, 1, 1)
        x = lam * x + (1 - lam) * x[p["perm"].long()]
    return x


def warp(x: torch.Tensor, theta: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """Bilinear affine resampling of ``x`` ``(B, C, H, W)`` by ``theta`` ``(B, 2, 3)`` (PyTorch's
    ``align_corners=False`` convention); pixels from outside the image are ``fill`` ``(B, 1, 1, 1)``."""
    grid = affine_grid(theta, x.shape[2], x.shape[3])  # (B, H, W, 2) source (x, y) in [-1, 1]
    # grid_sample pads with zeros: warp the difference from the background, then add it back.
    return grid_sample(x - fill, grid) + fill


def apply_image(x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
    """Warp, erase, mix: images ``(B, H, W)`` or ``(B, C, H, W)`` in, the same shape out."""
    four = x.unsqueeze(1) if x.dim() == 3 else x  # (B, C, H, W)
    fill = p["fill"][:, None, None, None]  # (B, 1, 1, 1) background
    four = warp(four, p["theta"], fill)
    if "keep" in p:  # random erasing: the rectangle becomes background
        keep = p["keep"][:, None]  # (B, 1, H, W)
        four = four * keep + fill * (1 - keep)
    if "perm" in p:  # mixup / cutmix with another sample of the batch
        mix = p["mix"][:, None]  # (B, 1, H, W)
        four = mix * four + (1 - mix) * four[p["perm"].long()]
    return four.reshape(x.shape)


def apply(x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
    """The augmentation that ``p`` describes: images when it has a ``theta``, else audio."""
    return apply_image(x, p) if "theta" in p else apply_audio(x, p)


def mixed_loss(
    logits: torch.Tensor, y: torch.Tensor, p: dict[str, torch.Tensor] | None, smoothing: float = 0.0
) -> torch.Tensor:
    """Mean cross-entropy; under mixup/cutmix ``lam ce(y) + (1 - lam) ce(y[perm])`` per sample.
    ``smoothing`` e: each ce is taken against ``(1 - e) onehot(y) + e / classes`` (torch's ``label_smoothing``)."""
    if p is None or "perm" not in p:
        return F.cross_entropy(logits, y, label_smoothing=smoothing)
    lam = p["lam"].float()  # (B,)
    own = cross_entropy(logits, y, smoothing)  # (B,)
    other = cross_entropy(logits, y[p["perm"].long()], smoothing)
    return (lam * own + (1 - lam) * other).mean()


def cross_entropy(logits: torch.Tensor, y: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """Per prediction: ``-(1 - e) log p_y - e mean_k log p_k``, with ``p = softmax(logits)``."""
    return F.cross_entropy(logits, y, reduction="none", label_smoothing=smoothing)  # (B,)

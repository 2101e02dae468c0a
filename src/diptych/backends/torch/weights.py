"""Canonical weights <-> a torch model. PyTorch layout *is* the canonical layout."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from diptych.weights import check_weights


def export(model: nn.Module) -> dict[str, np.ndarray]:
    """``{name: float32 array}`` in canonical (PyTorch) layout."""
    model = getattr(model, "_orig_mod", model)  # unwrap torch.compile
    return {k: v.detach().cpu().numpy().astype(np.float32, copy=True) for k, v in model.state_dict().items()}


def load(model: nn.Module, params: dict[str, np.ndarray], source: str = "weights") -> None:
    """Copy canonical weights into ``model`` in place, refusing weights of another model."""
    model = getattr(model, "_orig_mod", model)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    check_weights(params, expected, source)
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in params.items()})

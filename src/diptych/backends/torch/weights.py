"""Canonical weights <-> a torch model. PyTorch layout *is* the canonical layout."""

from __future__ import annotations

import io

import numpy as np
import torch
from torch import nn

from diptych.backends.torch.distributed import full, shard_like
from diptych.fsio import atomic_write
from diptych.weights import check_weights


def export(model: nn.Module) -> dict[str, np.ndarray]:
    """``{name: float32 array}`` in canonical (PyTorch) layout; sharded (FSDP) parameters are gathered
    whole, a collective that every rank joins."""
    model = getattr(model, "_orig_mod", model)  # unwrap torch.compile
    # A C-ordered copy: channels-last tensors have other strides, and a view would alias live weights.
    return {
        k: np.array(full(v).detach().cpu().numpy(), dtype=np.float32, order="C", copy=True)
        for k, v in model.state_dict().items()
    }


def load(model: nn.Module, params: dict[str, np.ndarray], source: str = "weights") -> None:
    """Copy canonical weights into ``model`` in place, refusing weights of another model."""
    model = getattr(model, "_orig_mod", model)
    current = model.state_dict()
    check_weights(params, {k: tuple(v.shape) for k, v in current.items()}, source)
    # Casts to the model's dtype; a sharded (FSDP) parameter takes this rank's shard.
    model.load_state_dict({k: shard_like(current[k], torch.from_numpy(np.array(v))) for k, v in params.items()})


def to_bytes(state_dict: dict[str, torch.Tensor]) -> bytes:
    """``torch.save``'s file, in memory: written by the atomic writer, whose Python write reports a full disk
    as such (torch's own zip writer says only "[enforce fail ...] unexpected pos")."""
    buf = io.BytesIO()
    torch.save(state_dict, buf)
    return buf.getvalue()


def save_native(params: dict[str, np.ndarray], path) -> None:
    """Write a plain PyTorch ``state_dict`` (``torch.save``), as a torch user would load it:
    ``model.load_state_dict(torch.load(path, weights_only=True))``."""
    atomic_write(path, to_bytes({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in params.items()}))


def read_native(path) -> dict[str, np.ndarray]:
    """Read a ``state_dict`` file safely (``weights_only=True``: tensors only, no code runs)."""
    import warnings

    from diptych.errors import DiptychError

    try:
        with warnings.catch_warnings():  # torch warns about old pickle protocols before refusing them
            warnings.simplefilter("ignore")
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors, truncation, foreign objects: all one line
        raise DiptychError(
            f"{path} is not a readable PyTorch state_dict ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else 'corrupt'})"
        ) from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(torch.is_tensor(v) for v in sd.values()):
        raise DiptychError(f"{path} does not hold a state_dict of tensors")
    return {k: v.detach().cpu().numpy() for k, v in sd.items()}

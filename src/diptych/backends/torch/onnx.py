"""ONNX export of the torch twin's modules (``torch.onnx.export``), for ``diptych export`` and
``diptych port export``; the neutral command (:mod:`diptych.commands.export`) verifies the file with
onnxruntime against both twins before it reports success. (The JAX twin has no exporter: jax2onnx was
not adopted, see the command's docstring.)"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch


def export_module(model: torch.nn.Module, example: np.ndarray, seq_axis: bool = False) -> bytes:
    """``torch.onnx.export`` with a dynamic batch axis (the TorchScript exporter: ``dynamo=False``): the
    ONNX file's bytes, held in memory until verified, then written by the atomic writer (no file here).
    ``seq_axis``: axis 1 of the input and output is dynamic too (a transformer's sequence length)."""
    axes = {0: "batch", 1: "sequence"} if seq_axis else {0: "batch"}
    model.eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.from_numpy(example),),
            buf,
            dynamo=False,
            input_names=["x"],
            output_names=["logits"],
            dynamic_axes={"x": axes, "logits": axes},
            opset_version=17,
        )
    return buf.getvalue()


class Logits(torch.nn.Module):
    """A model whose forward returns ``(logits, state)`` (a language model), with the state dropped:
    the ONNX graph gives logits only."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.inner = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.inner(x)
        return y[0] if isinstance(y, tuple) else y

"""The torch twin's profiler: a ``torch.profiler`` trace of a range of training steps, and its top operations.

The trace is a Chrome trace (``RUN/profile/torch.pt.trace.json``): Perfetto (ui.perfetto.dev) and
``chrome://tracing`` open it, and TensorBoard's PyTorch profiler plugin (torch-tb-profiler) reads the folder.
:func:`top_ops` ranks operations by *self* time (an op's time minus the ops it calls), keyed by name and
first input's shape so that each layer's forward and backward are separate rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from diptych.traces import best_ms, top_by_self_time

_TRACE = "torch.pt.trace.json"


def start(trace_dir: str | Path):
    """Start tracing (CPU ops, and CUDA kernels when a GPU is used); the handle goes to :func:`stop`."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    prof = profile(activities=activities, record_shapes=True)
    prof.start()
    return prof, Path(trace_dir)


def stop(handle) -> Path:
    """Stop tracing and write the trace; returns its path."""
    prof, trace_dir = handle
    prof.stop()
    path = trace_dir / _TRACE
    prof.export_chrome_trace(str(path))
    return path


def _label(event: dict) -> str:
    dims = (event.get("args") or {}).get("Input Dims") or []
    first = next((d for d in dims if d), None)  # the first tensor input's shape tells the layers apart
    return f"{event['name']} {tuple(first)}" if first else event["name"]


def top_ops(trace_dir: str | Path, steps: int, wall_seconds: float, n: int = 15) -> list[dict]:
    """The ``n`` operations with the most self time per step: ``[{name, ms_per_step, share}]``, where
    ``share`` is the op's part of the traced steps' wall time."""
    events = json.loads((Path(trace_dir) / _TRACE).read_text())["traceEvents"]
    spans = [e for e in events if e.get("ph") == "X" and e.get("cat") in ("cpu_op", "user_annotation", "kernel")]
    return top_by_self_time(spans, _label, steps, wall_seconds, n)


class _Attention(torch.nn.Module):
    """Attention alone, as the transformer runs it: ``(B, T, D)`` in heads, ``F.scaled_dot_product_attention``."""

    def __init__(self, heads: int, causal: bool):
        super().__init__()
        self.heads, self.causal = heads, causal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q = x.view(b, t, self.heads, d // self.heads).transpose(1, 2)  # (B, H, T, Dh): q = k = v
        y = torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=self.causal)
        return y.transpose(1, 2).reshape(b, t, d)


def _layer_module(layer) -> torch.nn.Module:
    """One layer as the trainer builds it: ``nn.Linear``, ``nn.Conv1d``/``nn.Conv2d`` (channels-last), or attention."""
    if layer.heads:
        return _Attention(layer.heads, layer.causal)
    out_ch, in_ch, *k = layer.weight
    if not k:
        return torch.nn.Linear(in_ch, out_ch)
    conv = torch.nn.Conv2d if len(k) == 2 else torch.nn.Conv1d
    m = conv(in_ch, out_ch, k[0], stride=layer.stride, padding=layer.padding)
    return m.to(memory_format=torch.channels_last) if len(k) == 2 else m


def _time_layer(m: torch.nn.Module, x: torch.Tensor, dev: torch.device, bf16: bool) -> float:
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
        g = torch.randn_like(m(x))  # the gradient arriving from above

    def run(n: int) -> None:
        for _ in range(n):
            m.zero_grad(set_to_none=True)  # as the trainer does: fresh gradient buffers each step
            x.grad = None
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                y = m(x)
            y.backward(g)
        if dev.type == "cuda":
            torch.cuda.synchronize()

    return best_ms(run)


def kernel_ms(layers: list, batch: int, *, precision: str = "fp32", world=None) -> dict[str, float]:
    """Milliseconds of one training step's forward + backward of each layer *alone* (``{name: ms}``):
    ``layers`` from :func:`diptych.flops.layers`, at ``batch`` samples, with the trainer's own choices
    (``nn.Conv2d`` in channels-last memory, ``nn.Linear``, bf16 autocast). Everything else a step does
    (pooling, ReLU, the loss, Adam, moving the batch) is left out: the bench's MFU ceiling divides by this.
    ``world``: the run's :class:`~diptych.launch.World` (its ``device``); one process, as the bench runs.

        >>> from diptych.flops import layers
        >>> from diptych.tasks import get_task
        >>> ms = kernel_ms(layers(get_task("mnist1d-mlp").model), 8)
        >>> sorted(ms) == ["fc1", "fc2", "fc3"] and all(v > 0 for v in ms.values())
        True
    """
    dev = torch.device(world.device if world is not None else "cpu")
    out = {}
    for layer in layers:
        m = _layer_module(layer)
        x = torch.randn(batch, *layer.in_shape)  # (B, C, H, W), (B, C, L) or (B, D)
        if x.ndim == 4:  # NHWC, as the trainer runs its 2-D convs
            x = x.contiguous(memory_format=torch.channels_last)
        m, x = m.to(dev), x.to(dev).requires_grad_(layer.input_grad)
        out[layer.name] = _time_layer(m, x, dev, precision == "bf16")
    return out

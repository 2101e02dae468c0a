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

from diptych.traces import top_by_self_time

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

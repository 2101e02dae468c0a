"""The JAX twin's profiler: a ``jax.profiler`` trace of a range of training steps, and its top operations.

``jax.profiler.start_trace`` writes ``RUN/profile/plugins/profile/<time>/``: ``*.xplane.pb`` (TensorBoard's
profile plugin, XProf), ``*.trace.json.gz`` and ``perfetto_trace.json.gz`` (ui.perfetto.dev opens it).
:func:`top_ops` reads the JSON trace and ranks XLA's operations (the ``hlo_op`` of each executed thunk:
fusions, convolutions, dots, ...) by *self* time, plus the host-to-device transfers.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import jax

from diptych.traces import top_by_self_time

_TRANSFERS = ("BufferFromPyval", "TransferToDevice", "TransferToInfeed", "device_put")  # host -> device copies


def start(trace_dir: str | Path):
    """Start tracing; the handle goes to :func:`stop`."""
    jax.profiler.start_trace(str(trace_dir), create_perfetto_trace=True)
    return Path(trace_dir)


def stop(handle) -> Path:
    """Stop tracing and write the trace; returns its folder."""
    jax.profiler.stop_trace()
    return _latest(handle)


def _latest(trace_dir: Path) -> Path:
    runs = sorted((trace_dir / "plugins" / "profile").iterdir(), key=lambda p: p.stat().st_mtime)
    return runs[-1]


def _label(event: dict) -> str | None:
    args = event.get("args") or {}
    if "hlo_op" in args:
        return args["hlo_op"]
    if any(t in event.get("name", "") for t in _TRANSFERS):
        return event["name"]
    return None


def top_ops(trace_dir: str | Path, steps: int, wall_seconds: float, n: int = 15) -> list[dict]:
    """The ``n`` operations with the most self time per step: ``[{name, ms_per_step, share}]``, where
    ``share`` is the op's part of the traced steps' wall time (XLA may run ops on several threads at once)."""
    folder = _latest(Path(trace_dir))
    path = next(iter(sorted(folder.glob("*.trace.json.gz"))), folder / "perfetto_trace.json.gz")
    with gzip.open(path, "rt") as f:
        data = json.load(f)
    events = data["traceEvents"] if isinstance(data, dict) else data
    spans = [e for e in events if e.get("ph") == "X" and "dur" in e and _label(e) is not None]
    return top_by_self_time(spans, _label, steps, wall_seconds, n)

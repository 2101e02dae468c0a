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
import jax.numpy as jnp
from jax import lax

from diptych.traces import best_ms, top_by_self_time

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


def _layer_fn(layer):
    """One layer as the trainer runs it, ``f(x, w, b)``: a dot, or ``lax.conv_general_dilated`` channels-last
    (weights ``(*k, in, out)``, as ``nnx.Conv`` keeps them), or attention (``w`` and ``b`` unused)."""
    if layer.heads:

        def attention(x, w, b):  # (B, T, D) in heads, q = k = v, as the transformer calls it
            q = x.reshape(*x.shape[:2], layer.heads, -1)  # (B, T, H, Dh)
            return jax.nn.dot_product_attention(q, q, q, is_causal=layer.causal).reshape(x.shape) + 0 * (
                w.sum() + b.sum()
            )

        return attention
    dims = len(layer.weight) - 2
    if dims == 0:
        return lambda x, w, b: x @ w + b  # (B, D) @ (D, O)
    spec = ("NWC", "WIO", "NWC") if dims == 1 else ("NHWC", "HWIO", "NHWC")
    pads = [(layer.padding, layer.padding)] * dims
    return lambda x, w, b: lax.conv_general_dilated(x, w, (layer.stride,) * dims, pads, dimension_numbers=spec) + b


def _time_layer(f, args: tuple, input_grad: bool, mesh) -> float:
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from diptych.backends.jax.distributed import AXIS

    def fwd_bwd(x, w, b, g):  # g: the gradient arriving from above
        _, vjp = jax.vjp(f, x, w, b)
        dx, dw, db = vjp(g)
        return (dx if input_grad else None), dw[None], db[None]  # per-device weight gradients, not reduced

    if mesh is not None and mesh.size > 1:  # the batch split over the devices, as in training
        rows, rep = NamedSharding(mesh, P(AXIS)), NamedSharding(mesh, P())
        args = tuple(jax.device_put(a, s) for a, s in zip(args, (rows, rep, rep, rows)))
        step = jax.jit(jax.shard_map(fwd_bwd, mesh=mesh, in_specs=(P(AXIS), P(), P(), P(AXIS)), out_specs=P(AXIS)))
    else:
        step = jax.jit(fwd_bwd)

    def run(n: int) -> None:
        jax.block_until_ready([step(*args) for _ in range(n)])

    return best_ms(run)


def kernel_ms(layers: list, batch: int, *, precision: str = "fp32", world=None) -> dict[str, float]:
    """Milliseconds of one training step's forward + backward of each layer *alone* (``{name: ms}``):
    ``layers`` from :func:`diptych.flops.layers`, at ``batch`` samples, as the trainer runs them
    (``lax.conv_general_dilated`` channels-last, a dot, bf16 compute for ``bf16``). When the ``world``
    (:class:`~diptych.launch.World`) has a mesh, the batch is split over its devices as in training, each
    device computing its own weight gradient: the all-reduce, like everything else a step does (pooling,
    ReLU, the loss, Adam), is left out. The bench's MFU ceiling divides by this.

        >>> from diptych.flops import layers
        >>> from diptych.tasks import get_task
        >>> ms = kernel_ms(layers(get_task("mnist1d-mlp").model), 8)
        >>> sorted(ms) == ["fc1", "fc2", "fc3"] and all(v > 0 for v in ms.values())
        True
    """
    dt = jnp.bfloat16 if precision == "bf16" else jnp.float32
    out = {}
    for i, layer in enumerate(layers):
        out_ch, in_ch, *k = layer.weight or (1, 1)  # attention: no weights (one dummy entry to differentiate)
        f = _layer_fn(layer)
        kx, kw, kg = jax.random.split(jax.random.key(i), 3)
        in_shape = (*layer.in_shape[1:], layer.in_shape[0]) if k else layer.in_shape  # channels last
        x = jax.random.normal(kx, (batch, *in_shape), dt)  # (B, H, W, C), (B, L, C), (B, D) or (B, T, D)
        w = jax.random.normal(kw, (*k, in_ch, out_ch), dt) * 0.1
        b = jnp.zeros((out_ch,), dt)
        g = jax.random.normal(kg, jax.eval_shape(f, x, w, b).shape, dt)
        out[layer.name] = _time_layer(f, (x, w, b, g), layer.input_grad, world.mesh if world is not None else None)
    return out

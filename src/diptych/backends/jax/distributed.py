"""Data parallelism for the JAX twin: ``jax.distributed`` + one ``Mesh`` over every device.

One process drives all its local devices; with several processes (``jax.distributed``, one per
host, or ``--nproc N`` on loopback) the mesh spans the devices of all of them. :func:`init` builds
the :class:`~diptych.launch.World` with that mesh, and the trainer takes the world in its
constructor. The mesh has one axis, ``data``: the batch is split along it (``P("data")``) and
parameters and optimizer state are replicated (``P()``) (:func:`shardings`). The step is the
trainer's own pure function, jitted with those ``in_shardings``/``out_shardings``; XLA inserts the
gradient all-reduce. Because the loss is the mean over the *global* batch, the gradient is the same
as on one device.

Sharded parameters (``--shard fsdp``): the mesh has two axes, ``(data, fsdp)`` = ``(1, N)``. The batch is
split over both (``P(("data", "fsdp"))``), and each parameter along its largest axis that ``fsdp``
divides (:func:`state_shardings`; a leaf with no such axis stays replicated); the optimizer state
follows by the same rule, leaf by leaf. The same pure step is jitted with those shardings, and XLA
all-gathers the parameters for the forward and reduce-scatters the gradients. Weights leave the
trainer gathered (:func:`gather`) and come back as shards (:func:`place`).

A process is a worker of a multi-process run when ``JAX_COORDINATOR_ADDRESS`` is set (with
``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``, or detected from SLURM/MPI by
``jax.distributed.initialize``). On CPU the cross-process collectives go through gloo.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from diptych.errors import DiptychError
from diptych.launch import (
    World,
    check_port,
    one_device_shard_error,
    run_workers,
    usable_cores,
    warn_oversubscription,
)

AXIS = "data"
FSDP = "fsdp"


def is_worker() -> bool:
    return "JAX_COORDINATOR_ADDRESS" in os.environ


def one_device_per_core() -> None:
    """Give XLA:CPU one device per core (``jax_num_cpu_devices``), so a data mesh over them uses every core.

    Why: XLA:CPU runs each convolution on one thread (only matmuls use its intra-op pool), so one
    CPU device kept mnist-cnn's step at 1.3 of 2 cores. The JAX idiom for more hardware is more
    devices and a sharded batch: with one device per core, the training step of mnist-cnn ran
    2.1x faster, fsdd-cnn 2.1x, the LSTMs 1.5-1.8x, the GRU 1.2x; only the tiny MNIST-1D CNN and
    MNIST MLP lost (0.84x, 0.67x; each step is under a millisecond). docs/benchmarks-history.md has the table.

    Left alone when the user chose (``JAX_NUM_CPU_DEVICES``, or XLA's
    ``--xla_force_host_platform_device_count``), in a ``jax.distributed`` worker (its launcher
    decides), and once a JAX computation has run in this process (the device set is then fixed).
    """
    if (
        "JAX_NUM_CPU_DEVICES" in os.environ
        or is_worker()
        or "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")
    ):
        return
    try:
        jax.config.update("jax_num_cpu_devices", usable_cores())
    except RuntimeError:  # JAX has started: keep the devices it has
        pass


def lost_peer(error: BaseException) -> bool:
    """Did a collective fail because another process is gone (gloo connection or coordination-service errors)?"""
    return jax.process_count() > 1 and isinstance(error, jax.errors.JaxRuntimeError)


def _env_int(name: str) -> int | None:
    return int(os.environ[name]) if os.environ.get(name) else None


def resolve_device(device: str) -> str:
    """The JAX platform for ``--device``; ``auto``: the GPU when JAX has one, else the CPU."""
    if device == "cpu":
        return "cpu"
    try:
        jax.devices("gpu")
        return "gpu"
    except RuntimeError:
        if device == "gpu":
            raise DiptychError(
                "--device gpu: JAX sees no GPU here (is jax[cuda] installed?); use --device cpu (or auto)"
            ) from None
        return "cpu"


def init(device: str = "auto", batch_size: int | None = None, shard: str = "none") -> World:
    """This process's world: after joining ``jax.distributed`` in a worker, one ``data`` mesh over every
    device that takes an equal share of a ``batch_size`` batch (``None``: all of them), or no mesh
    when there is one device. ``shard="fsdp"``: a ``(data, fsdp)`` mesh of shape ``(1, devices)``."""
    if is_worker() and not jax.distributed.is_initialized():
        # Must come before anything touches a device. gloo: XLA:CPU has no collectives across processes by default.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(num_processes=_env_int("JAX_NUM_PROCESSES"), process_id=_env_int("JAX_PROCESS_ID"))
    platform = resolve_device(device)
    devices = _mesh_devices(jax.devices(platform), batch_size)  # global: every process's, ordered by process
    info = {
        "engine": "jax.sharding Mesh" + (" + jax.distributed" if jax.process_count() > 1 else ""),
        "platform": platform,
    }
    many = {"gather": _gather} if jax.process_count() > 1 else {}  # a world of one process: its own value
    if shard == "fsdp":
        if len(devices) < 2:
            raise one_device_shard_error(len(devices), "devices")
        mesh = Mesh(np.array(devices).reshape(1, -1), (AXIS, FSDP))
        info["engine"] += " (data, fsdp)"
    else:
        mesh = Mesh(np.array(devices), (AXIS,)) if len(devices) > 1 else None
    return World(
        rank=jax.process_index(),
        size=jax.process_count(),
        devices=len(devices),
        device=platform,
        mesh=mesh,
        close=_close,
        info=info,
        shard=shard,
        **many,
    )


def _gather(value) -> list:
    """Every process's JSON-able ``value``, in process order: their JSON text as padded bytes, all-gathered."""
    from jax.experimental import multihost_utils

    text = np.frombuffer(json.dumps(value).encode(), np.uint8)
    size = int(np.max(multihost_utils.process_allgather(np.array([len(text)], np.int32))))
    padded = np.zeros(size, np.uint8)
    padded[: len(text)] = text
    rows = np.asarray(multihost_utils.process_allgather(padded))  # (processes, size)
    return [json.loads(bytes(row).rstrip(b"\0")) for row in rows]


def _mesh_devices(devices: list, batch: int | None) -> list:
    """All devices, or in one process the most of them that divide the batch evenly (a batch of
    100 on 8 CPU devices uses 5); across processes each must hold an equal share, so that is an error."""
    if batch is None or batch % len(devices) == 0:
        return devices
    if jax.process_count() > 1:
        raise DiptychError(
            f"--batch-size {batch} is not divisible by the {len(devices)} devices of the data "
            f"mesh; pick a multiple of {len(devices)}"
        )
    return devices[: max(k for k in range(1, len(devices) + 1) if batch % k == 0)]


def _close() -> None:
    if jax.distributed.is_initialized():
        jax.distributed.shutdown()  # a barrier: rank 0 has written its files before anyone leaves


def shardings(mesh: Mesh) -> tuple[NamedSharding, NamedSharding]:
    """``(replicated, rows)``: where the state lives (a copy on every device) and how a batch is split
    (over every axis of the mesh)."""
    return NamedSharding(mesh, P()), NamedSharding(mesh, P(AXIS if mesh.axis_names == (AXIS,) else mesh.axis_names))


def state_shardings(mesh: Mesh, tree):
    """Where each leaf of the parameters (or of the optimizer state) lives on an ``fsdp`` mesh: split along
    its largest axis that the ``fsdp`` axis divides (the first, on a tie), or replicated when none does
    (a bias of odd length, a step count). Leaves of the same shape land alike, so Adam's moments follow
    their parameters."""
    n = mesh.shape[FSDP]

    def where(leaf) -> NamedSharding:
        shape = tuple(leaf.shape)
        axes = [i for i, d in enumerate(shape) if d % n == 0]
        if not axes:
            return NamedSharding(mesh, P())
        axis = max(axes, key=lambda i: shape[i])
        return NamedSharding(mesh, P(*[None] * axis, FSDP))

    return jax.tree.map(where, tree)


def place(tree, at):
    """Each process's whole copy of the state (the same everywhere: one seed, or one checkpoint) -> global
    arrays laid out by the shardings ``at``; every device keeps only its slice. Then copied into fresh
    XLA buffers (see ``train._on_device``: a resumed run continues bit for bit)."""

    def put(a, sharding):
        a = np.asarray(a)
        return jax.make_array_from_callback(a.shape, sharding, lambda index: a[index])

    return jax.jit(_copy, out_shardings=at)(jax.tree.map(put, tree, at))


def _copy(tree):
    return jax.tree.map(jnp.copy, tree)


def gather(tree, mesh: Mesh):
    """Sharded state -> replicated on every device (an all-gather that every process joins); read it with
    :func:`local`."""
    return jax.jit(_copy, out_shardings=NamedSharding(mesh, P()))(tree)


def local(tree):
    """This process's copy of replicated (data-parallel) state, as single-device arrays: evaluation
    and export then run on one device, with no collective that the other workers would have to join."""
    return jax.tree.map(
        lambda a: a.addressable_data(0) if isinstance(a, jax.Array) and len(a.devices()) > 1 else a, tree
    )


def held_bytes(params, opt_state) -> dict[str, int]:
    """Bytes of the parameters and optimizer state on this process's devices (the sum of its shards), on the
    fullest of them, and of the whole of each."""
    out = {}
    for name, tree in (("param", params), ("opt", opt_state)):
        shards = [s for a in jax.tree.leaves(tree) if isinstance(a, jax.Array) for s in a.addressable_shards]
        out[f"{name}_bytes_local"] = sum(s.data.nbytes for s in shards)
        per_device: dict = {}
        for s in shards:
            per_device[s.device] = per_device.get(s.device, 0) + s.data.nbytes
        out[f"{name}_bytes_device"] = max(per_device.values(), default=0)  # the most on one of its devices
        out[f"{name}_bytes_total"] = sum(a.nbytes for a in jax.tree.leaves(tree) if isinstance(a, jax.Array))
    return out


def to_global(tree, sharding: NamedSharding):
    """This process's part of each array -> one global array laid out by ``sharding``: for the
    replicated state, the values every process holds (same seed, or the same checkpoint); for a
    batch, this process's rows of the global batch."""
    return jax.tree.map(lambda a: jax.make_array_from_process_local_data(sharding, np.asarray(a)), tree)


def launch(argv: list[str], nproc: int, port: int, out: str) -> None:
    """Run ``python -m diptych ARGV`` as ``nproc`` local ``jax.distributed`` processes (coordinator on loopback)."""
    warn_oversubscription(nproc, usable_cores(), "CPU cores")
    check_port(port)
    cores = str(max(1, usable_cores() // nproc))  # each worker: its share of the cores, one device each
    envs = [
        {
            "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
            "JAX_NUM_PROCESSES": str(nproc),
            "JAX_PROCESS_ID": str(rank),
            "JAX_NUM_CPU_DEVICES": cores,
        }
        for rank in range(nproc)
    ]
    run_workers(argv, envs, out)

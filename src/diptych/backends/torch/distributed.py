"""Data parallelism for the torch twin: ``torch.distributed`` + DDP, started by torchrun.

The model code is unchanged; :func:`parallelize` wraps the trainer's forward in
``DistributedDataParallel`` (the torchtitan layout: build, then parallelize). Every rank feeds
its shard of the same global batch; DDP all-reduces and *averages* the gradients, and with equal
shards the average of the shard-mean gradients is the gradient of the global-batch mean loss,
so N workers take the same steps as one.

Launch: ``diptych train ... --nproc N`` re-runs the same command in N workers through
torchrun's elastic agent (:func:`launch`); a user's own ``torchrun --nnodes ... --rdzv-endpoint
...`` starting ``diptych train`` works the same way, because a worker only reads torchrun's
environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``).
Process group: ``nccl`` on CUDA, ``gloo`` on CPU.

Sharded parameters (``--shard fsdp``): :func:`shard_model` applies FSDP2 (``fully_shard``) to the model in
place before the optimizer is built, so every parameter, its gradient and its optimizer state are
``DTensor`` shards (dim 0 split over the ranks); the forward all-gathers each unit's parameters and the
backward reduce-scatters (averages) their gradients. Weights and optimizer state cross the trainer's
boundary gathered into canonical full tensors (:func:`full`) and go back in as shards
(:func:`shard_like`), so checkpoints stay canonical and resume with any number of workers.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import uuid
import warnings

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.tensor import DTensor, distribute_tensor
from torch.nn.parallel import DistributedDataParallel

from diptych.errors import DiptychError
from diptych.launch import (
    World,
    check_port,
    failure_message,
    one_device_shard_error,
    skip_teardown,
    usable_cores,
    warn_oversubscription,
)


def is_worker() -> bool:
    """True inside a torchrun worker (ours or the user's)."""
    return "TORCHELASTIC_RUN_ID" in os.environ or "RANK" in os.environ and "WORLD_SIZE" in os.environ


def lost_peer(error: BaseException) -> bool:
    """Is ``error`` a collective that failed because another worker is gone (gloo/NCCL connection errors)?"""
    text = str(error)
    return (
        isinstance(error, dist.DistError)
        or isinstance(error, RuntimeError)
        and ("gloo" in text or "NCCL" in text or "Connection closed by peer" in text)
    )


def resolve_device(device: str) -> torch.device:
    """``auto``: the GPU when CUDA sees one, else the CPU. In a worker, GPU = ``cuda:LOCAL_RANK``."""
    if device == "gpu" and not torch.cuda.is_available():
        raise DiptychError("--device gpu: torch sees no CUDA GPU here; use --device cpu (or auto)")
    if device in ("gpu", "auto") and torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    return torch.device("cpu")


def init(device: str = "auto", batch_size: int | None = None, shard: str = "none") -> World:
    """Join the process group when started by torchrun; otherwise a world of one. (``batch_size`` is
    for the JAX twin's mesh; every torch worker takes an equal shard of the batch.) ``shard="fsdp"``:
    the trainer shards its parameters over the ranks with FSDP2 (:func:`shard_model`)."""
    dev = resolve_device(device)
    if not is_worker() or int(os.environ.get("WORLD_SIZE", "1")) == 1:
        if shard != "none":
            raise one_device_shard_error(1, "worker processes")
        return World(device=str(dev), info={"engine": "torch"})
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", device_id=dev if dev.type == "cuda" else None)
    rank, size = dist.get_rank(), dist.get_world_size()

    def mean(values: np.ndarray) -> np.ndarray:
        t = torch.as_tensor(np.asarray(values, np.float32), device=dev)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return (t / size).cpu().numpy()

    def gather(value) -> list:
        out = [None] * size
        dist.all_gather_object(out, json.loads(json.dumps(value)))
        return out

    def close() -> None:
        dist.barrier()  # rank 0 has written run.json and the weights before anyone leaves
        dist.destroy_process_group()
        skip_teardown()  # gloo's threads may still hold a tensor: end with os._exit (launch.exit_process)

    engine = "torch.distributed FSDP2 (fully_shard)" if shard == "fsdp" else "torch.distributed DDP"
    return World(
        rank=rank,
        size=size,
        devices=size,
        device=str(dev),
        mean=mean,
        close=close,
        info={"engine": engine, "backend": dist.get_backend()},
        shard=shard,
        gather=gather,
    )


def parallelize(model: torch.nn.Module, compile: bool = False) -> torch.nn.Module:
    """The training forward of a worker: ``model`` wrapped in DDP, which broadcasts rank 0's weights and
    all-reduces (averages) the gradients in ``backward``. Parameters, optimizer and weight I/O stay the
    plain model's, so the model code is unchanged (the torchtitan layout)."""
    device = next(model.parameters()).device
    ddp = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    return torch.compile(ddp) if compile else ddp


def shard_model(model: nn.Module) -> nn.Module:
    """FSDP2 over all ranks, in place: ``fully_shard`` on each unit (:func:`units`), then on the root,
    which keeps the rest (tied embeddings among it). Build the optimizer afterwards, on the sharded
    parameters. The model code is unchanged; its class becomes an ``FSDPModule`` subclass."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    device = next(model.parameters()).device
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    # FSDP2 warns for every unit that returns a view; our models apply no in-place op to a unit's
    # output (the equivalence tests would see the wrong gradients it causes).
    warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")
    for unit in units(model):
        fully_shard(unit, mesh=mesh)
    return fully_shard(model, mesh=mesh)


def units(model: nn.Module) -> list[nn.Module]:
    """The submodules sharded as one group each: every direct child that holds parameters, and each element
    of a ``ModuleList``/``Sequential`` child (a transformer's blocks). Two kinds stay with the root, whose
    parameters are whole for all of its forward: an embedding table (the GPT reuses it as its output head,
    ``F.linear(h, self.embed.weight)``, outside the embedding's own forward, where a unit of its own would
    already be resharded), and a module that shares a parameter with a module outside it (tied weights)."""
    holders: dict[int, set[int]] = {}
    for m in model.modules():
        for p in m._parameters.values():
            if p is not None:
                holders.setdefault(id(p), set()).add(id(m))

    def own(unit: nn.Module) -> bool:
        inside = {id(m) for m in unit.modules()}
        params = list(unit.parameters())
        return bool(params) and all(holders[id(p)] <= inside for p in params)

    parts = [
        part
        for child in model.children()
        if not isinstance(child, nn.Embedding)
        for part in (child if isinstance(child, nn.ModuleList | nn.Sequential) else [child])
    ]
    return [part for part in parts if own(part)]


def full(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor: a ``DTensor`` shard is all-gathered (a collective every rank joins)."""
    return t.full_tensor() if isinstance(t, DTensor) else t


def shard_like(ref: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """``value`` (a whole tensor, the same on every rank) laid out like ``ref``: this rank's shard when
    ``ref`` is a ``DTensor`` (cut locally, no communication), else ``value`` on ``ref``'s device and dtype."""
    if isinstance(ref, DTensor):
        value = value.to(ref.to_local().device, ref.dtype)
        return distribute_tensor(value, ref.device_mesh, ref.placements, src_data_rank=None)
    return value.to(ref.device, ref.dtype)


def _local_bytes(t: torch.Tensor) -> int:
    local = t.to_local() if isinstance(t, DTensor) else t
    return local.numel() * local.element_size()


def held_bytes(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Bytes of parameters and optimizer state that this process (its one device) holds, and their totals."""
    params = list(model.parameters())
    state = [v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
    local = {"param": sum(_local_bytes(p) for p in params), "opt": sum(_local_bytes(v) for v in state)}
    return {
        **{f"{k}_bytes_local": v for k, v in local.items()},
        **{f"{k}_bytes_device": v for k, v in local.items()},  # one device per process
        "param_bytes_total": sum(p.numel() * p.element_size() for p in params),
        "opt_bytes_total": sum(v.numel() * v.element_size() for v in state),
    }


def launch(argv: list[str], nproc: int, port: int, out: str) -> None:
    """Run ``python -m diptych ARGV`` in ``nproc`` local workers under torchrun's elastic agent.

    If a worker dies the agent stops the others (SIGTERM, then SIGKILL) and we report it in one
    line; checkpoints are written atomically by rank 0, so the last one stays intact.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    gpus = torch.cuda.device_count()
    warn_oversubscription(nproc, gpus or usable_cores(), "GPUs" if gpus else "CPU cores")
    check_port(port)
    # As torchrun does: one thread per worker unless the user chose, so N workers do not fight over cores.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, usable_cores() // nproc)))
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # our one line says it all
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=uuid.uuid4().hex,
        rdzv_backend="c10d",
        rdzv_endpoint=f"127.0.0.1:{port}",
        max_restarts=0,
        monitor_interval=0.2,
    )
    try:
        elastic_launch(config, entrypoint=sys.executable)("-m", "diptych", *argv)
    except ChildFailedError as e:
        # The cause: a worker that died of a signal, before survivors that stopped on a lost peer.
        rank, failure = min(e.failures.items(), key=lambda kv: (kv[1].exitcode >= 0, kv[1].timestamp))
        if failure.exitcode == 2:  # a user error, already explained by the workers
            raise DiptychError(f"worker {rank} of {nproc} stopped on the error above") from None
        raise DiptychError(failure_message(rank, nproc, failure.exitcode, out)) from None

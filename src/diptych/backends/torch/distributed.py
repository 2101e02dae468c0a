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
"""

from __future__ import annotations

import logging
import os
import sys
import uuid

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from diptych.errors import DiptychError
from diptych.launch import World, check_port, failure_message, usable_cores, warn_oversubscription


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


def init(device: str = "auto", batch_size: int | None = None) -> World:
    """Join the process group when started by torchrun; otherwise a world of one. (``batch_size`` is
    for the JAX twin's mesh; every torch worker takes an equal shard of the batch.)"""
    dev = resolve_device(device)
    if not is_worker() or int(os.environ.get("WORLD_SIZE", "1")) == 1:
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

    def close() -> None:
        dist.barrier()  # rank 0 has written run.json and the weights before anyone leaves
        dist.destroy_process_group()

    return World(
        rank=rank,
        size=size,
        devices=size,
        device=str(dev),
        mean=mean,
        close=close,
        info={"engine": "torch.distributed DDP", "backend": dist.get_backend()},
    )


def parallelize(model: torch.nn.Module, compile: bool = False) -> torch.nn.Module:
    """The training forward of a worker: ``model`` wrapped in DDP, which broadcasts rank 0's weights and
    all-reduces (averages) the gradients in ``backward``. Parameters, optimizer and weight I/O stay the
    plain model's, so the model code is unchanged (the torchtitan layout)."""
    device = next(model.parameters()).device
    ddp = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    return torch.compile(ddp) if compile else ddp


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

"""Neutral pieces of data-parallel runs: the world a worker lives in, and launching local workers.

Each twin's ``backends/<fw>/distributed.py`` builds a :class:`World` (rank, size, how to average
a metric across workers, how to wrap a trainer for data parallelism) with its own engine:
``torch.distributed`` + DDP, or ``jax.distributed`` + a device ``Mesh``. The driver only sees
this class, so the training loop stays framework-free.

"Size" counts the processes that each load one shard of the global batch; ``devices`` counts
the devices taking part (JAX drives several devices from one process, so ``devices >= size``).

``shard``: ``none`` replicates the parameters and optimizer state on every device (data parallelism);
``fsdp`` shards them over the devices (torch FSDP2, a JAX mesh with an ``fsdp`` axis). A sharded world
gathers the canonical weights with a collective, so every worker takes part in writing a checkpoint.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from diptych.errors import DiptychError
from diptych.progress import console


def _identity(x):
    return x


def _nothing() -> None:
    return None


def _alone(value):
    return [value]


SHARDS = ("none", "fsdp")  # --shard: replicated state (data parallelism), or sharded parameters


@dataclass
class World:
    rank: int = 0
    size: int = 1
    devices: int = 1
    device: str = "cpu"  # where the twin computes, in the framework's own spelling ("cpu", "cuda:0", "gpu")
    mean: Callable[[np.ndarray], np.ndarray] = _identity  # average a metric over workers (equal shards)
    mesh: Any = None  # the framework's device mesh for data parallelism, where it has one (JAX); passed to Trainer
    close: Callable[[], None] = _nothing  # leave the process group
    info: dict = field(default_factory=dict)  # recorded in run.json: engine, backend, ...
    shard: str = "none"  # "fsdp": parameters and optimizer state sharded over the devices (see SHARDS)
    gather: Callable[[Any], list] = _alone  # every worker's small JSON-able value, in rank order (a collective)

    @property
    def sharded(self) -> bool:
        """Parameters are sharded: exporting the weights is a collective that every worker joins."""
        return self.shard != "none"

    @property
    def lead(self) -> bool:
        """Only the lead worker prints, evaluates, and writes checkpoints and run.json."""
        return self.rank == 0

    def record(self) -> dict:
        return {
            "processes": self.size,
            "rank": self.rank,
            "devices": self.devices,
            "device": self.device,
            "shard": self.shard,
            **self.info,
        }


_END_AT_ONCE = False  # set by skip_teardown(): end through os._exit, not the interpreter's teardown


def skip_teardown() -> None:
    """Make :func:`exit_process` end this process with ``os._exit``, past the interpreter's teardown.

    Why: torch's gloo process group runs each collective on a worker thread, which signals the collective
    done *before* it lets go of its tensors. A worker whose last collective was its goodbye barrier can
    reach the teardown while that thread still holds a tensor whose Python object it must release; the
    thread then cannot take the GIL, and the C++ runtime aborts a run that had succeeded (SIGABRT,
    "terminate called without an active exception"; pytorch/pytorch#65237 is the same crash). On 2 busy
    cores, 5 of 58 two-worker FSDP2 runs ended that way, and 0 of 45 with this exit. torch's
    ``World.close`` calls this after it has left the process group."""
    global _END_AT_ONCE
    _END_AT_ONCE = True


def exit_process(code: int) -> None:
    """End the process with ``code``: ``sys.exit``, or after :func:`skip_teardown` the exit handlers
    (``atexit``) and a flush of stdout and stderr, then ``os._exit``. Nothing is lost: every file a
    command writes is closed by then (``fsio``), and the native threads end with the process."""
    if not _END_AT_ONCE:
        sys.exit(code)
    atexit._run_exitfuncs()
    end_now(code)


def end_now(code: int) -> None:
    """Flush stdout and stderr, then ``os._exit(code)``: no exit handlers, no interpreter teardown."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), which can be fewer than the machine has."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _quota_cores() -> float:
    """The CPU quota of this cgroup (v2 ``cpu.max``) in cores; infinity when none is set or readable."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        return float("inf") if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return float("inf")


class OtherLoad:
    """How many cores *other* processes kept busy between two readings, on the CPUs this process may use.

    Linux's ``/proc/stat`` counts every busy jiffy of each CPU (user, nice, system, irq, softirq); this
    process's own CPU time (all its threads) is subtracted, so what is left is the neighbours' share.
    ``read()`` returns ``None`` where it cannot tell: no ``/proc/stat`` (macOS, Windows), or a container
    whose CPU quota is smaller than the CPUs it may run on (other tenants' load would count).

        >>> meter = OtherLoad()
        >>> load = meter.read()          # cores, e.g. 0.02 on a quiet machine, ~1.0 beside one busy process
        >>> load is None or load >= 0.0
        True
    """

    def __init__(self) -> None:
        cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
        self._lines = {f"cpu{c}" for c in cpus} if _quota_cores() >= len(cpus) else set()  # see the docstring
        self._hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._last = self._sample()

    def _sample(self) -> tuple[float, float, float] | None:
        """(wall seconds, busy CPU seconds of our CPUs, this process's CPU seconds), or None."""
        if not self._lines:  # nothing it could tell (see the docstring): no reading at all
            return None
        try:
            with open("/proc/stat") as f:
                busy = 0
                for line in f:
                    name, *fields = line.split()
                    if name in self._lines:  # user nice system idle iowait irq softirq ...: idle, iowait not busy
                        busy += sum(int(v) for i, v in enumerate(fields[:7]) if i not in (3, 4))
        except (OSError, ValueError):
            return None
        return time.monotonic(), busy / self._hz, time.process_time()

    def read(self) -> float | None:
        """Cores busy with other processes since the last call (or construction), >= 0; None: unknown."""
        now, last = self._sample(), self._last
        self._last = now
        if now is None or last is None or now[0] - last[0] <= 0:
            return None
        return max(0.0, ((now[1] - last[1]) - (now[2] - last[2])) / (now[0] - last[0]))


def check_port(port: int, host: str = "127.0.0.1") -> None:
    """Refuse a coordinator port another program holds (the workers would otherwise hang or join it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # REUSEADDR: a port left in TIME_WAIT by a finished run is free; one that something listens on is not.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            raise DiptychError(
                f"coordinator port {port} on {host} is already in use (another distributed run?); "
                f"pass --port with a free port"
            ) from None


def warn_oversubscription(nproc: int, capacity: int, what: str) -> None:
    """More workers than cores/devices run, but slower: 2 processes x 2 threads on 2 cores halved throughput."""
    if nproc > capacity:
        console.print(
            f"[yellow]diptych: warning: --nproc {nproc} is more than the {capacity} {what} here; "
            f"the workers will share them and run slower than fewer workers would[/]"
        )


def one_device_shard_error(devices: int, what: str) -> DiptychError:
    """``--shard fsdp`` with nothing to shard over: say how to get several workers."""
    return DiptychError(
        f"--shard fsdp shards the parameters over several {what}, and this run has {devices}; "
        f"add --nproc N (N >= 2), or drop --shard"
    )


def failure_message(rank: int, nproc: int, exitcode: int, out: str) -> str:
    """One line for a worker that died: which one, how, and what is left on disk."""
    how = (
        f"was killed by {signal.Signals(-exitcode).name}"
        if exitcode < 0 and -exitcode in signal.valid_signals()
        else f"exited with code {exitcode}"
    )
    ckpt = os.path.join(out, "checkpoint.safetensors")
    kept = (
        f"the last checkpoint {ckpt} is intact: continue with --resume"
        if os.path.exists(ckpt)
        else "no checkpoint was written yet: start the run again"
    )
    return f"worker {rank} of {nproc} {how}, so the run was stopped; {kept}"


def run_workers(argv: list[str], envs: list[dict[str, str]], out: str, poll: float = 0.2) -> None:
    """Start ``python -m diptych ARGV`` once per env and watch them: when one fails, stop the rest.

    A worker blocked in a collective waits for a peer that will never come, so waiting on the
    survivors would hang; they are terminated (then killed after 10 s) and the failure is
    reported in one line. Exit code 2 means the workers already printed a one-line user error.
    """
    procs = [subprocess.Popen([sys.executable, "-m", "diptych", *argv], env={**os.environ, **env}) for env in envs]
    try:
        while True:
            codes = [p.poll() for p in procs]
            # The cause: a worker that died of a signal, before survivors that stopped on a lost peer.
            failed = sorted((c >= 0, r, c) for r, c in enumerate(codes) if c not in (None, 0))
            if failed:
                _, rank, code = failed[0]
                _stop(procs)
                if code == 2:
                    raise DiptychError(f"worker {rank} of {len(procs)} stopped on the error above")
                raise DiptychError(failure_message(rank, len(procs), code, out))
            if all(c == 0 for c in codes):
                return
            time.sleep(poll)
    except KeyboardInterrupt:
        _stop(procs)
        raise


@contextlib.contextmanager
def lost_peers_in_one_line(world: World, dist):
    """Inside a data-parallel run, a collective that fails because another worker died becomes one line
    (:func:`lost_peer_error`) instead of a traceback; the launcher names the worker that failed."""
    try:
        yield
    except Exception as e:
        if world.size > 1 and dist.lost_peer(e):
            raise lost_peer_error(e) from None
        raise


def lost_peer_error(error: BaseException) -> DiptychError:
    """What a surviving worker says when a collective fails because a peer died (the launcher names which)."""
    first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    return DiptychError(
        f"this worker lost contact with the other workers ({first}); the launcher reports which worker failed"
    )


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.time() + 10
    for p in procs:
        try:
            p.wait(timeout=max(deadline - time.time(), 0.1))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

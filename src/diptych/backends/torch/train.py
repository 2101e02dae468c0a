"""The PyTorch trainer: eager ``zero_grad -> forward -> backward -> step``, optionally compiled.

The neutral driver (:mod:`diptych.driver`) owns epochs, batches, evaluation and checkpoints;
this class owns one model, its ``torch.optim`` optimizer and its LR scheduler.
"""

from __future__ import annotations

import os
import platform
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.optim.lr_scheduler import LambdaLR

from diptych.backends.torch import augment, distributed, models, transformer, weights
from diptych.errors import DiptychError
from diptych.language import cached_sequence
from diptych.launch import OtherLoad, World, usable_cores
from diptych.schedules import lr_factor
from diptych.tasks import OptimizerSpec, Task

# A training step below this many FLOPs runs on one intra-op thread (see configure).
ONE_THREAD_FLOPS = 50e6
_THREAD_POLICY: dict = {}  # what configure() chose and why, for run.json (runtime())
_DEFAULT_THREADS = torch.get_num_threads()  # torch's own choice (physical cores), before any configure()
_WAIT_POLICY = os.environ.get("OMP_WAIT_POLICY")  # what OpenMP read when torch loaded (backends.before_import)
_SPINCOUNT = os.environ.get("GOMP_SPINCOUNT")
_DEFAULT_REASON = "torch's default within the usable cores, fewer while other processes are busy"


def choose_threads(step_flops: float | None, cores: int) -> tuple[int, str]:
    """Intra-op threads for a training step of ``step_flops`` FLOPs on ``cores`` usable cores, and why.

    Why not always every core: each op split over threads ends at a barrier. A step of tiny ops
    (MNIST-1D: 1-20 MFLOP, tens of microseconds per op) gains little from a second thread, and when
    another process holds a core, the thread on it is preempted for a whole scheduler slice while its
    partners wait: `make demo` ran mnist1d-cnn's torch twin 8x slower than JAX, and a tiny model ran
    80x faster on one thread than on two. Steps below ``ONE_THREAD_FLOPS`` (50 MFLOP: half a millisecond
    at this 2-core CPU's one-core fp32 matmul peak of ~100 GFLOP/s, a few at what small ops reach) take one
    thread; larger ones torch's default within the usable cores (never more: oversubscription is 10x slower).
    """
    if step_flops is not None and step_flops < ONE_THREAD_FLOPS:
        return 1, f"step of {step_flops / 1e6:.0f} MFLOP < {ONE_THREAD_FLOPS / 1e6:.0f}: one thread"
    return min(_DEFAULT_THREADS, cores), _DEFAULT_REASON


class ThreadGovernor:
    """Intra-op threads that step aside while another process is busy on the cores, and come back after.

    Why: OpenMP threads meet at a barrier after every op. On a machine torch has to itself, a waiting
    thread should spin a little (``GOMP_SPINCOUNT``, see :func:`diptych.backends.before_import`): sleeping
    and waking at each barrier cost mnist-cnn 1.5x. But beside a busy neighbour, the partner a thread
    waits for is preempted for a whole scheduler slice: two spinning threads ran mnist-cnn 6x slower,
    two sleeping ones 2.5x, and one thread not at all (it never waits, and the kernel gives it a core of
    its own). So every ``interval`` seconds of training this reads how many cores *other* processes
    kept busy (:class:`diptych.launch.OtherLoad`) and uses the cores left, rounded, at least one:

        threads = clip(round(cores - others), 1, most)

    Reproducibility: a run on 1 thread and one on 2 differ in the last bits (oneDNN splits a conv's
    weight-gradient sum by thread), so a run resumed under a different load is not bit-identical to
    an unbroken one. ``OMP_NUM_THREADS=N`` fixes the count and turns the governor off.
    """

    def __init__(self, most: int, interval: float = 0.25) -> None:
        self.most, self.threads, self.interval = most, most, interval
        self.switches = 0
        self._load = OtherLoad()
        self._next = time.monotonic() + interval

    def tick(self) -> None:
        """Call once per step: cheap (a clock read) except once per ``interval``."""
        now = time.monotonic()
        if now < self._next:
            return
        # No step for a while (an evaluation, a pause, another program's turn): that reading would
        # describe the past, so it only starts a fresh window.
        stale = now - self._next > self.interval
        self._next = now + self.interval
        others = self._load.read()
        if others is None or stale:
            return
        want = max(1, min(self.most, int(usable_cores() - others + 0.5)))
        if want != self.threads:
            torch.set_num_threads(want)
            self.threads, self.switches = want, self.switches + 1
            _THREAD_POLICY["switches"] = self.switches


def configure(threads: int | None = None, step_flops: float | None = None) -> ThreadGovernor | None:
    """Set torch's intra-op threads: ``threads`` if given, the user's ``OMP_NUM_THREADS`` if set (torchrun sets
    it for its workers too), else by the work in a step (:func:`choose_threads`), never above the usable cores.
    Returns the :class:`ThreadGovernor` that adapts a policy-chosen count of several threads to the load
    (``None`` when the count is fixed or one thread)."""
    cores = usable_cores()
    fixed = bool(threads or os.environ.get("OMP_NUM_THREADS"))  # a count someone chose stays as it is
    if threads:
        n, why = min(threads, cores), "asked for"
    elif fixed:
        n, why = min(_DEFAULT_THREADS, cores), "OMP_NUM_THREADS"
    else:
        n, why = choose_threads(step_flops, cores)
    torch.set_num_threads(n)
    governor = ThreadGovernor(n) if n > 1 and not fixed else None
    _THREAD_POLICY.clear()
    _THREAD_POLICY.update(
        threads=n,
        reason=why,
        omp_wait_policy=_WAIT_POLICY,
        gomp_spincount=_SPINCOUNT,
        adaptive=governor is not None,
        **({"switches": 0} if governor is not None else {}),  # the governor counts its changes here
    )
    # Parity and reproducibility: full float32 matmuls (no TF32 on GPUs that have it).
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return governor


def make_optimizer(spec: OptimizerSpec, params) -> torch.optim.Optimizer:
    """torch.optim for a neutral spec. Updates, with g the gradient and lr_t the scheduled rate:

    sgd: p -= lr_t g;  momentum: b = mu b + g, p -= lr_t b;  nesterov: p -= lr_t (g + mu b);
    adam/adamw: Kingma & Ba with bias correction (adamw: p -= lr_t wd p first, decoupled).

    Adam and AdamW run torch's fused kernel (``fused=True``: one pass over each parameter instead of a
    dozen ``foreach`` element-wise ops, each ending at an OpenMP barrier): the same update, and mnist-cnn
    trains 1.14x the steps per second on 2 cores (BENCHMARKS.md).
    """
    params = list(params)
    fused = all(p.device.type in ("cpu", "cuda") for p in params)  # where torch has the fused kernel
    if spec.name == "sgd":
        return torch.optim.SGD(params, lr=spec.lr)
    if spec.name in ("momentum", "nesterov"):
        return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum, nesterov=spec.name == "nesterov")
    if spec.name == "adam":
        return torch.optim.Adam(params, lr=spec.lr, fused=fused)
    if spec.name == "adamw":
        if spec.decay_matrices_only:  # two groups: matrices decay, biases and LayerNorm gains do not
            params = [
                {"params": [p for p in params if p.dim() >= 2]},
                {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
            ]
        return torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay, fused=fused)
    raise DiptychError(f"unknown optimizer {spec.name!r}")


class Trainer:
    """The torch twin of :class:`diptych.contracts.Trainer` (its docstrings give the shapes)."""

    framework = "torch"

    def __init__(
        self,
        task: Task,
        seed: int,
        total_steps: int,
        *,
        precision: str = "fp32",
        device: str = "cpu",
        compile: bool | None = None,
        world: World | None = None,
    ) -> None:
        """``precision``: ``fp32``; ``bf16`` (autocast: bfloat16 compute, float32 master weights and
        optimizer state); ``fp64`` (float64 throughout: parity's exact reference trajectory).
        ``device``: a torch device string (``cpu``, ``cuda:0``). ``compile``: ``torch.compile`` the model
        (default: eager). ``world``: a data-parallel world of several processes wraps the training forward
        in DDP (:func:`distributed.parallelize`), or with ``shard="fsdp"`` shards the model with FSDP2
        (:func:`distributed.shard_model`) before the optimizer is built on its sharded parameters."""
        # Threads by the work in a step (see choose_threads), fewer while other processes are busy (ThreadGovernor).
        governor = configure(step_flops=_step_flops(task, world))
        self.governor = governor if torch.device(device).type == "cpu" else None
        self.task = task
        self.device = torch.device(device)
        self.dtype = torch.float64 if precision == "fp64" else torch.float32
        self.autocast = precision == "bf16"
        self.model = models.build_model(task.model, seed).to(self.device, self.dtype)
        if getattr(task.model, "dims", None) == 2:
            # NHWC activations: oneDNN's convs run 1.2-1.5x faster in training and ~2x in
            # inference here. The model code is unchanged; only the memory layout differs.
            self.model = self.model.to(memory_format=torch.channels_last)
        multi = world is not None and world.size > 1
        self.sharded = multi and world.sharded
        if self.sharded:  # every parameter becomes this rank's DTensor shard; the optimizer holds shards too
            distributed.shard_model(self.model)
        self.optimizer = make_optimizer(task.optimizer, self.model.parameters())
        opt = task.optimizer
        self.lr_lambda = lambda t: lr_factor(opt.schedule, t, total_steps, opt.warmup_fraction)
        self.scheduler = LambdaLR(self.optimizer, self.lr_lambda)
        # torch.compile wraps the module; parameters are shared, so weights/optimizer are unchanged.
        self.eval_forward = torch.compile(self.model) if compile else self.model
        # Training runs through DDP in a world of several processes (FSDP2's hooks are in the model itself);
        # evaluation keeps the plain forward.
        ddp = multi and not self.sharded
        self.forward = distributed.parallelize(self.model, compile=bool(compile)) if ddp else self.eval_forward
        # Language models carry their recurrent state from one batch to the next (truncated BPTT).
        self.stateful = task.model.carries_state
        self.state = None

    def _input(self, x: np.ndarray) -> torch.Tensor:
        xb = torch.from_numpy(x)
        return xb.to(self.device, self.dtype) if xb.is_floating_point() else xb.to(self.device)  # ids stay ints

    def _logits(self, xb: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, classes)``, or ``(B, T, V)`` for a language model from a zero state."""
        return self.eval_forward(xb)[0] if self.stateful else self.eval_forward(xb)

    def reset_state(self) -> None:
        """Forget the carried recurrent state (the driver calls this at each epoch start)."""
        self.state = None

    def export_carry(self) -> dict[str, np.ndarray]:
        if self.state is None:
            return {}
        h, c = self.state if isinstance(self.state, tuple) else (self.state, None)  # (L, B, H) each
        return {"h": h.float().cpu().numpy().copy()} | ({"c": c.float().cpu().numpy().copy()} if c is not None else {})

    def load_carry(self, carry: dict[str, np.ndarray]) -> None:
        state = tuple(torch.from_numpy(np.array(carry[k])).to(self.device, self.dtype) for k in "hc" if k in carry)
        self.state = None if not state else state if len(state) == 2 else state[0]

    def train_step(self, x: np.ndarray, y: np.ndarray, aug: dict[str, np.ndarray] | None = None) -> torch.Tensor:
        """One optimizer step on a batch ``x`` ``(B, ...)`` float32 (or int ids), ``y`` ``(B,)`` or ``(B, T)``
        int. Returns the loss. ``aug``: augmentation parameters from :mod:`diptych.data.augment`, applied
        here on device."""
        if self.governor is not None:
            self.governor.tick()
        xb, yb = self._input(x), torch.from_numpy(y).to(self.device).long()  # (B, ...), (B,) or (B, T)
        if aug is not None:
            aug = {
                k: torch.from_numpy(v).to(self.device, self.dtype)
                if v.dtype.kind == "f"
                else torch.from_numpy(v).to(self.device)
                for k, v in aug.items()
            }
            xb = augment.apply(xb, aug)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            if self.stateful:
                logits, state = self.forward(xb, self.state)  # (B, T, V)
                # Keep the values, cut the graph: the next window starts here without backprop into this one.
                self.state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
            else:
                logits = self.forward(xb)  # (B, classes)
        # Mean over every prediction (B, or B*T for a language model), in float32; mixup/cutmix mix two labels.
        smoothing = self.task.optimizer.label_smoothing  # the training loss only: scores stay unsmoothed
        loss = augment.mixed_loss(logits.float().flatten(0, -2), yb.flatten(), aug, smoothing)
        loss.backward()
        if self.task.optimizer.clip_norm:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.task.optimizer.clip_norm)
        self.optimizer.step()
        self.scheduler.step()
        return loss.detach()

    def losses_to_numpy(self, losses: list[torch.Tensor]) -> np.ndarray:
        return torch.stack(losses).cpu().numpy()

    @torch.no_grad()
    def predict(self, x: np.ndarray) -> np.ndarray:
        """Logits ``(B, classes)`` for inputs ``(B, ...)`` (callers chunk large sets: see
        :data:`diptych.objectives.EVAL_BATCH`)."""
        self.model.eval()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            return self._logits(self._input(x)).float().cpu().numpy()

    @torch.no_grad()
    def predict_sequence(self, x: np.ndarray, state=None):
        """Language models: logits ``(B, T, V)`` for ids ``x`` ``(B, T)`` continuing from ``state``
        (``None``: zeros), and the state after the last step, for evaluation and generation.
        A transformer's state is its key/value cache (:func:`diptych.language.cached_sequence`)."""
        self.model.eval()
        if self.task.model.decodes_with_cache:
            return cached_sequence(self, x, state, self.task.model.context)
        logits, state = self.eval_forward(self._input(x), state)
        return logits.float().cpu().numpy(), state

    def new_cache(self, batch: int) -> transformer.KVCache:
        """An empty key/value cache for ``batch`` rows (preallocated for the whole context)."""
        return transformer.KVCache.empty(self.task.model, batch, self.device, self.dtype)

    @torch.no_grad()
    def extend(self, ids: np.ndarray, cache: transformer.KVCache, pos: int):
        """Logits ``(B, T, V)`` for ``ids`` ``(B, T)`` at positions ``pos ..``, written into ``cache`` in place."""
        self.model.eval()
        return self.model(self._input(ids), cache, pos).float().cpu().numpy(), cache

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray, dict[str, np.ndarray]]:
        """Loss, logits ``(B, classes)`` and canonical-layout gradients on one batch (no update)."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        logits = self._logits(self._input(x))
        loss = F.cross_entropy(logits.flatten(0, -2), torch.from_numpy(y).to(self.device).long().flatten())
        loss.backward()
        grads = {
            k: distributed.full(p.grad).detach().float().cpu().numpy().copy() for k, p in self.model.named_parameters()
        }
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach()), logits.detach().float().cpu().numpy(), grads

    # --- state I/O in canonical / flat form, for weights files and checkpoints
    def export_weights(self) -> dict[str, np.ndarray]:
        return weights.export(self.model)

    def load_weights(self, params: dict[str, np.ndarray], source: str = "weights") -> None:
        weights.load(self.model, params, source)

    def export_opt_state(self) -> dict[str, np.ndarray]:
        """Optimizer state in canonical form, shared by both twins: ``step``, and per parameter
        ``exp_avg.<name>`` / ``exp_avg_sq.<name>`` (Adam, AdamW) or ``momentum_buffer.<name>``
        (SGD with momentum), in PyTorch layout. Sharded (FSDP) state is gathered whole, by every rank."""
        out = {"step": np.asarray(self.scheduler.last_epoch, np.int64)}
        for name, p in self.model.named_parameters():
            for key, v in self.optimizer.state.get(p, {}).items():
                if key != "step" and torch.is_tensor(v):
                    out[f"{key}.{name}"] = distributed.full(v).detach().float().cpu().numpy().copy()
        return out

    def load_opt_state(self, flat: dict[str, np.ndarray]) -> None:
        step = int(np.asarray(flat["step"]).reshape(-1)[0])
        for name, p in self.model.named_parameters():
            state = {  # laid out like the parameter: this rank's shard of a sharded one
                k: distributed.shard_like(p, torch.from_numpy(np.array(flat[f"{k}.{name}"])))
                for k in ("exp_avg", "exp_avg_sq", "momentum_buffer")
                if f"{k}.{name}" in flat
            }
            if "exp_avg" in state:
                state["step"] = torch.tensor(float(step))
            self.optimizer.state[p] = state
        self.scheduler.last_epoch = step
        for group, base in zip(self.optimizer.param_groups, self.scheduler.base_lrs):
            group["lr"] = base * self.lr_lambda(step)

    def num_params(self) -> int:
        return models.num_params(self.model)

    def held_bytes(self) -> dict[str, int]:
        """Bytes of parameters and optimizer state held by this process (its shards), and their totals."""
        return distributed.held_bytes(self.model, self.optimizer)


def _step_flops(task: Task, world: World | None) -> float | None:
    """FLOPs of one training step on this worker (its shard of the batch), or None if not counted."""
    from diptych.flops import train_flops

    try:
        return train_flops(task.model) * task.budget.batch_size / (world.size if world is not None else 1)
    except (AttributeError, KeyError, TypeError, ValueError):  # a model kind flops.py does not count
        return None


def versions() -> dict[str, str]:
    return {"torch": torch.__version__}


def runtime(device: str = "cpu") -> dict:
    """How this process computes, for ``run.json``: threads (and the policy that chose them), and the
    CUDA/cuDNN versions and driver when ``device`` is a GPU."""
    out = {
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "thread_policy": dict(_THREAD_POLICY),
        "parallel_backend": "OpenMP" if torch.backends.openmp.is_available() else "native",
    }
    if str(device).startswith("cuda") and torch.cuda.is_available():
        driver = getattr(torch._C, "_cuda_getDriverVersion", lambda: None)()  # e.g. 12040 for 12.4
        out["accelerator"] = {
            "name": torch.cuda.get_device_name(),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "driver_cuda_version": f"{driver // 1000}.{driver % 1000 // 10}" if driver else None,
            "capability": ".".join(map(str, torch.cuda.get_device_capability())),
        }
    return out


def device_name() -> str:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({platform.processor() or 'x86_64'})"


def matmul_gflops(n: int = 1024, seconds: float = 1.0) -> float:
    """Measured float32 matmul throughput (GFLOP/s) on this device: the peak that MFU divides by."""
    import time

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        torch.mm(a, b)
        reps += 1
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9

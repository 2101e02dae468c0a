"""The PyTorch trainer: eager ``zero_grad -> forward -> backward -> step``, optionally compiled.

The neutral driver (:mod:`diptych.driver`) owns epochs, batches, evaluation and checkpoints;
this class owns one model, its ``torch.optim`` optimizer and its LR scheduler.
"""

from __future__ import annotations

import platform

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.optim.lr_scheduler import LambdaLR

from diptych.backends.torch import augment, distributed, models, weights
from diptych.errors import DiptychError
from diptych.launch import World, usable_cores
from diptych.schedules import lr_factor
from diptych.tasks import OptimizerSpec, Task


def configure(threads: int | None = None) -> None:
    """Never ask for more threads than this process may use: oversubscription is 10x slower."""
    torch.set_num_threads(min(threads or torch.get_num_threads(), usable_cores()))
    # Parity and reproducibility: full float32 matmuls (no TF32 on GPUs that have it).
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def make_optimizer(spec: OptimizerSpec, params) -> torch.optim.Optimizer:
    """torch.optim for a neutral spec. Updates, with g the gradient and lr_t the scheduled rate:

    sgd: p -= lr_t g;  momentum: b = mu b + g, p -= lr_t b;  nesterov: p -= lr_t (g + mu b);
    adam/adamw: Kingma & Ba with bias correction (adamw: p -= lr_t wd p first, decoupled).
    """
    if spec.name == "sgd":
        return torch.optim.SGD(params, lr=spec.lr)
    if spec.name in ("momentum", "nesterov"):
        return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum, nesterov=spec.name == "nesterov")
    if spec.name == "adam":
        return torch.optim.Adam(params, lr=spec.lr)
    if spec.name == "adamw":
        return torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)
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
        in DDP (:func:`distributed.parallelize`)."""
        configure()
        self.task = task
        self.device = torch.device(device)
        self.dtype = torch.float64 if precision == "fp64" else torch.float32
        self.autocast = precision == "bf16"
        self.model = models.build_model(task.model, seed).to(self.device, self.dtype)
        if getattr(task.model, "dims", None) == 2:
            # NHWC activations: oneDNN's convs run 1.2-1.5x faster in training and ~2x in
            # inference here. The model code is unchanged; only the memory layout differs.
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = make_optimizer(task.optimizer, self.model.parameters())
        opt = task.optimizer
        self.lr_lambda = lambda t: lr_factor(opt.schedule, t, total_steps, opt.warmup_fraction)
        self.scheduler = LambdaLR(self.optimizer, self.lr_lambda)
        # torch.compile wraps the module; parameters are shared, so weights/optimizer are unchanged.
        self.eval_forward = torch.compile(self.model) if compile else self.model
        # Training runs through DDP in a world of several processes; evaluation keeps the plain forward.
        multi = world is not None and world.size > 1
        self.forward = distributed.parallelize(self.model, compile=bool(compile)) if multi else self.eval_forward
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
        loss = augment.mixed_loss(logits.float().flatten(0, -2), yb.flatten(), aug)
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
        (``None``: zeros), and the state after the last step, for evaluation and generation."""
        self.model.eval()
        logits, state = self.eval_forward(self._input(x), state)
        return logits.float().cpu().numpy(), state

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray, dict[str, np.ndarray]]:
        """Loss, logits ``(B, classes)`` and canonical-layout gradients on one batch (no update)."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        logits = self._logits(self._input(x))
        loss = F.cross_entropy(logits.flatten(0, -2), torch.from_numpy(y).to(self.device).long().flatten())
        loss.backward()
        grads = {k: p.grad.detach().float().cpu().numpy().copy() for k, p in self.model.named_parameters()}
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
        (SGD with momentum), in PyTorch layout."""
        out = {"step": np.asarray(self.scheduler.last_epoch, np.int64)}
        for name, p in self.model.named_parameters():
            for key, v in self.optimizer.state.get(p, {}).items():
                if key != "step" and torch.is_tensor(v):
                    out[f"{key}.{name}"] = v.detach().float().cpu().numpy().copy()
        return out

    def load_opt_state(self, flat: dict[str, np.ndarray]) -> None:
        step = int(np.asarray(flat["step"]).reshape(-1)[0])
        for name, p in self.model.named_parameters():
            state = {
                k: torch.from_numpy(np.array(flat[f"{k}.{name}"])).to(self.device, self.dtype)
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


def versions() -> dict[str, str]:
    return {"torch": torch.__version__}


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

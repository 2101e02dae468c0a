"""The JAX trainer: a pure, jit-compiled ``(params, opt_state, batch) -> (params, opt_state, loss)``.

The NNX module is split once into a static ``graphdef`` and a pytree of parameters; the step
merges them inside ``jit``, differentiates with ``jax.value_and_grad`` and applies an optax
update. Parameters and optimizer state are donated, so XLA updates them in place. Batches are
passed in as arguments (a jitted function that closes over the dataset would embed it as a
constant and take minutes to compile).
"""

from __future__ import annotations

import functools


import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from diptych.backends.jax import augment, models, weights
from diptych.errors import DiptychError
from diptych.schedules import warmup_steps
from diptych.tasks import OptimizerSpec, Task

EVAL_BATCH = 1000


def configure() -> None:
    # Parity and reproducibility: full float32 matmuls on every backend (no TF32/bf16 passes).
    jax.config.update("jax_default_matmul_precision", "float32")


def make_schedule(spec: OptimizerSpec, total_steps: int) -> optax.Schedule | float:
    """The optax form of :mod:`diptych.schedules` (same curve as the torch twin's LambdaLR)."""
    if spec.schedule == "constant":
        return spec.lr
    warm = warmup_steps(total_steps, spec.warmup_fraction) if spec.schedule == "onecycle" else 0
    if warm == 0:
        return optax.cosine_decay_schedule(spec.lr, decay_steps=max(total_steps, 1))
    return optax.warmup_cosine_decay_schedule(0.0, spec.lr, warm, decay_steps=total_steps, end_value=0.0)


def make_optimizer(spec: OptimizerSpec, total_steps: int) -> optax.GradientTransformation:
    """optax for a neutral spec; the same update rules as the torch twin's ``torch.optim``."""
    lr = make_schedule(spec, total_steps)
    if spec.name == "sgd":
        return optax.sgd(lr)
    if spec.name in ("momentum", "nesterov"):
        return optax.sgd(lr, momentum=spec.momentum, nesterov=spec.name == "nesterov")
    if spec.name == "adam":
        return optax.adam(lr)
    if spec.name == "adamw":
        return optax.adamw(lr, weight_decay=spec.weight_decay)
    raise DiptychError(f"unknown optimizer {spec.name!r}")


def loss_fn(params: nnx.State, graphdef: nnx.GraphDef, x: jax.Array, y: jax.Array, compute_dtype=None):
    """Mean softmax cross-entropy, and the logits ``(B, classes)`` as auxiliary output.

    With ``compute_dtype=jnp.bfloat16`` the forward runs in bfloat16 on a bfloat16 copy of the
    float32 parameters (the cast is differentiated, so gradients arrive in float32); the loss is
    always taken in float32.
    """
    if compute_dtype is not None:
        params = jax.tree.map(lambda p: p.astype(compute_dtype), params)
        x = x.astype(compute_dtype)
    logits = nnx.merge(graphdef, params)(x).astype(jnp.float32)  # (B, classes)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits


def grads_fn(graphdef, params, x, y, compute_dtype=None):
    """((loss, logits), grads) without updating anything: for parity checks."""
    return jax.value_and_grad(loss_fn, has_aux=True)(params, graphdef, x, y, compute_dtype)


def train_step(graphdef, tx, params, opt_state, x, y, aug=None, compute_dtype=None):
    """Pure: one optax step. ``x`` ``(B, ...)`` float32, ``y`` ``(B,)`` int32; ``aug``: augmentation
    parameters from :mod:`diptych.data.augment` (a pytree of arrays), applied inside the jitted step."""
    if aug is not None:
        x = augment.apply(x, aug)
    (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, graphdef, x, y, compute_dtype)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return params, opt_state, loss


@jax.jit
def _on_device(tree):
    """Copy a pytree into fresh XLA-owned buffers.

    Arrays made from numpy may alias numpy's memory with a different alignment, and XLA:CPU's
    kernels then take other vectorized paths and round differently in the last bit; fresh
    buffers make a resumed run continue bit for bit.
    """
    return jax.tree.map(jnp.copy, tree)


def logits_fn(graphdef, params, x, compute_dtype=None):
    if compute_dtype is not None:
        params = jax.tree.map(lambda p: p.astype(compute_dtype), params)
        x = x.astype(compute_dtype)
    return nnx.merge(graphdef, params)(x).astype(jnp.float32)


class Trainer:
    framework = "jax"

    def __init__(self, task: Task, seed: int, total_steps: int, compile: bool = True, precision: str = "fp32"):
        """``precision``: ``fp32``, or ``bf16`` (bfloat16 compute, float32 parameters and optimizer state)."""
        configure()
        self.task = task
        self.model = models.build_model(task.model, seed)
        self.graphdef, self.params = nnx.split(self.model, nnx.Param)
        self.tx = make_optimizer(task.optimizer, total_steps)
        self.opt_state = self.tx.init(self.params)
        dt = {"fp32": None, "bf16": jnp.bfloat16}[precision]
        self._step = jax.jit(functools.partial(train_step, self.graphdef, self.tx, compute_dtype=dt),
                             donate_argnums=(0, 1))
        self._logits = jax.jit(functools.partial(logits_fn, self.graphdef, compute_dtype=dt))
        self._grads = jax.jit(functools.partial(grads_fn, self.graphdef, compute_dtype=dt))

    def train_step(self, x: np.ndarray, y: np.ndarray, aug: dict[str, np.ndarray] | None = None) -> jax.Array:
        self.params, self.opt_state, loss = self._step(self.params, self.opt_state, x, y, aug)
        return loss  # stays on device; the driver fetches losses in groups

    @staticmethod
    def losses_to_numpy(losses: list[jax.Array]) -> np.ndarray:
        return np.asarray(jax.device_get(losses), dtype=np.float32)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Logits ``(B, classes)``; batches are padded to a fixed size so ``jit`` compiles once."""
        n = len(x)
        size = EVAL_BATCH if n <= EVAL_BATCH else n
        if n < size:
            x = np.concatenate([x, np.zeros((size - n, *x.shape[1:]), x.dtype)])
        return np.asarray(self._logits(self.params, x))[:n]

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray, dict[str, np.ndarray]]:
        """Loss, logits ``(B, classes)`` and canonical-layout gradients on one batch (no update)."""
        (loss, logits), grads = self._grads(self.params, x, y)
        return float(loss), np.asarray(logits), weights.to_canonical(self.task.model, nnx.to_pure_dict(grads))

    # --- state I/O in canonical / flat form, for weights files and checkpoints
    def _sync_model(self) -> None:
        nnx.update(self.model, self.params)

    def export_weights(self) -> dict[str, np.ndarray]:
        self._sync_model()
        return weights.export(self.model)

    def load_weights(self, params: dict[str, np.ndarray], source: str = "weights") -> None:
        weights.load(self.model, params, source)
        _, params = nnx.split(self.model, nnx.Param)
        self.params = _on_device(params)

    def export_opt_state(self) -> dict[str, np.ndarray]:
        """Optimizer state in the canonical form the torch twin uses (see its docstring)."""
        spec = self.task.model
        out: dict[str, np.ndarray] = {}
        for s in self.opt_state:
            if isinstance(s, optax.ScaleByAdamState):
                out["step"] = np.asarray(s.count, np.int64)
                for key, tree in (("exp_avg", s.mu), ("exp_avg_sq", s.nu)):
                    out.update({f"{key}.{k}": v for k, v in weights.to_canonical(spec, nnx.to_pure_dict(tree)).items()})
            elif isinstance(s, optax.TraceState):
                out.update({f"momentum_buffer.{k}": v
                            for k, v in weights.to_canonical(spec, nnx.to_pure_dict(s.trace)).items()})
            elif isinstance(s, optax.ScaleByScheduleState):
                out["step"] = np.asarray(s.count, np.int64)
        out.setdefault("step", np.asarray(0, np.int64))
        return out

    def load_opt_state(self, flat: dict[str, np.ndarray]) -> None:
        spec = self.task.model

        def tree(key):
            state = jax.tree.map(jnp.zeros_like, self.params)  # same structure as the parameters
            part = {k[len(key) + 1:]: v for k, v in flat.items() if k.startswith(key + ".")}
            nnx.replace_by_pure_dict(state, weights.from_canonical(spec, part))
            return state

        count = jnp.asarray(np.asarray(flat["step"]).reshape(-1)[0], jnp.int32)
        new = []
        for s in self.opt_state:
            if isinstance(s, optax.ScaleByAdamState):
                s = s._replace(count=count, mu=tree("exp_avg"), nu=tree("exp_avg_sq"))
            elif isinstance(s, optax.TraceState):
                s = s._replace(trace=tree("momentum_buffer"))
            elif isinstance(s, optax.ScaleByScheduleState):
                s = s._replace(count=count)
            new.append(s)
        self.opt_state = _on_device(tuple(new))

    def num_params(self) -> int:
        return models.num_params(self.model)


def versions() -> dict[str, str]:
    import flax
    import jaxlib

    return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "flax": flax.__version__,
            "optax": optax.__version__}


def device_name() -> str:
    d = jax.devices()[0]
    return f"{d.platform} ({d.device_kind})"



def matmul_gflops(n: int = 1024, seconds: float = 1.0) -> float:
    """Measured float32 matmul throughput (GFLOP/s) on this device: the peak that MFU divides by."""
    import time

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    mm = jax.jit(jnp.matmul)
    mm(a, b).block_until_ready()  # compile + warm-up
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        mm(a, b).block_until_ready()
        reps += 1
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9

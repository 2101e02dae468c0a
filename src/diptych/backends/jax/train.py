"""The JAX trainer: a pure, jit-compiled ``(params, opt_state, batch) -> (params, opt_state, loss)``.

The NNX module is split once into a static ``graphdef`` and a pytree of parameters; the step
merges them inside ``jit``, differentiates with ``jax.value_and_grad`` and applies an optax
update. Parameters and optimizer state are donated, so XLA updates them in place. Batches are
passed in as arguments (a jitted function that closes over the dataset would embed it as a
constant and take minutes to compile).
"""

from __future__ import annotations

import collections
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from diptych.backends.jax import augment, distributed, models, transformer, weights
from diptych.errors import DiptychError
from diptych.language import cached_sequence
from diptych.launch import World
from diptych.objectives import EVAL_BATCH
from diptych.schedules import warmup_steps
from diptych.tasks import OptimizerSpec, Task


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
        tx = optax.sgd(lr)
    elif spec.name in ("momentum", "nesterov"):
        tx = optax.sgd(lr, momentum=spec.momentum, nesterov=spec.name == "nesterov")
    elif spec.name == "adam":
        tx = optax.adam(lr)
    elif spec.name == "adamw":
        # decay_matrices_only: the torch twin's two parameter groups, as optax's mask (True: decays)
        mask = (lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)) if spec.decay_matrices_only else None
        tx = optax.adamw(lr, weight_decay=spec.weight_decay, mask=mask)
    else:
        raise DiptychError(f"unknown optimizer {spec.name!r}")
    # g <- g * min(1, c / ||g||_2) over all parameters at once, as torch's clip_grad_norm_.
    return optax.chain(optax.clip_by_global_norm(spec.clip_norm), tx) if spec.clip_norm else tx


def _cast(params, x, compute_dtype):
    if compute_dtype is None:
        return params, x
    params = jax.tree.map(lambda p: p.astype(compute_dtype), params)
    return params, x.astype(compute_dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x  # ids stay ints


def logits_fn(graphdef, params, x, carry=None, compute_dtype=None):
    """``(logits, carry)``: logits ``(B, classes)``, or ``(B, T, V)`` for a language model, which
    also takes and returns its recurrent state (``carry``; ``None`` for classifiers)."""
    params, x = _cast(params, x, compute_dtype)
    model = nnx.merge(graphdef, params)
    out = model(x) if carry is None else model(x, carry)
    logits, carry = out if isinstance(out, tuple) else (out, None)
    return logits.astype(jnp.float32), carry


def loss_fn(
    params: nnx.State,
    graphdef: nnx.GraphDef,
    x: jax.Array,
    y: jax.Array,
    carry=None,
    compute_dtype=None,
    aug=None,
    smoothing: float = 0.0,
):
    """Mean softmax cross-entropy over every prediction, with ``(logits, carry)`` as auxiliary output.

    With ``compute_dtype=jnp.bfloat16`` the forward runs in bfloat16 on a bfloat16 copy of the
    float32 parameters (the cast is differentiated, so gradients arrive in float32); the loss is
    always taken in float32. ``aug`` with a ``perm`` (mixup/cutmix) mixes each sample's label with its partner's.
    ``smoothing``: label smoothing of the targets (the task's ``label_smoothing``; a Python float, fixed at trace).
    """
    logits, carry = logits_fn(graphdef, params, x, carry, compute_dtype)
    return augment.mixed_loss(logits, y, aug, smoothing), (logits, carry)


def grads_fn(graphdef, params, x, y, compute_dtype=None):
    """((loss, (logits, carry)), grads) from a zero state, without updating anything: for parity checks."""
    return jax.value_and_grad(loss_fn, has_aux=True)(params, graphdef, x, y, None, compute_dtype)


def train_step(graphdef, tx, params, opt_state, x, y, carry=None, aug=None, compute_dtype=None, smoothing=0.0):
    """Pure: one optax step. ``x`` ``(B, ...)`` float32 (or int ids), ``y`` ``(B,)`` / ``(B, T)`` int32.

    A language model's ``carry`` is an input, not a parameter, so no gradient flows into the
    previous window: that is truncated BPTT. ``aug``: augmentation parameters from
    :mod:`diptych.data.augment` (a pytree of arrays), applied inside the jitted step.
    Returns ``(params, opt_state, loss, carry)``.
    """
    if aug is not None:
        x = augment.apply(x, aug)
    (loss, (_, carry)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, graphdef, x, y, carry, compute_dtype, aug, smoothing
    )
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return params, opt_state, loss, carry


@jax.jit
def _on_device(tree):
    """Copy a pytree into fresh XLA-owned buffers.

    Arrays made from numpy may alias numpy's memory with a different alignment, and XLA:CPU's
    kernels then take other vectorized paths and round differently in the last bit; fresh
    buffers make a resumed run continue bit for bit.
    """
    return jax.tree.map(jnp.copy, tree)


def _eager(fn, **_):
    """``compile=False``: run the step op by op, like PyTorch's eager mode (slow; for debugging with prints)."""
    return fn


# Jitted functions by (model spec, optimizer spec, total steps, precision, state placement, batch placement,
# eager): a second Trainer of the same shape in one process (an evaluation, a resumed run, the tests) neither
# retraces nor recompiles its step. The specs are frozen dataclasses, compared by value. (Code that swaps one
# of optax's transformations for another inside a running process must clear it.)
_JITTED: dict[tuple, tuple] = {}


def _jit(graphdef, optimizer: OptimizerSpec, total_steps: int, dt, at, batch_at, eager: bool) -> tuple:
    """``(graphdef, tx, step, logits, grads)``: the optax transformation and the jitted pure functions.
    ``at``: where the parameters, the optimizer state and the loss live (on a mesh: shardings)."""
    tx = make_optimizer(optimizer, total_steps)
    param_at, opt_at, state_at = at
    jit = _eager if eager else jax.jit
    smoothing = optimizer.label_smoothing  # the training loss only: scores stay unsmoothed
    step = functools.partial(train_step, graphdef, tx, compute_dtype=dt, smoothing=smoothing)
    if batch_at is None:
        step = jit(step, donate_argnums=(0, 1))
    else:  # (params, opt_state, x, y, carry, aug): the carry and the per-sample augmentation split by rows
        step = jit(
            step,
            in_shardings=(param_at, opt_at, batch_at, batch_at, batch_at, batch_at),
            out_shardings=(param_at, opt_at, state_at, batch_at),
            donate_argnums=(0, 1),
        )
    logits = jit(functools.partial(logits_fn, graphdef, compute_dtype=dt))
    grads = jit(functools.partial(grads_fn, graphdef, compute_dtype=dt))
    return graphdef, tx, step, logits, grads


# At most this many dispatched, unfinished steps on a mesh of several devices. Why: XLA:CPU (jaxlib 0.10.2)
# deadlocks when many multi-device steps are in flight: with 2 CPU devices, 60-300 mnist-cnn or mnist-mlp
# steps dispatched without a sync left one device's gradient all-reduce waiting for a partner that never
# came, and XLA ended the process after 40 s. The driver syncs every 20 steps anyway; this bound protects
# anyone who calls train_step in a loop of their own. Blocking on the loss from IN_FLIGHT steps ago keeps
# the dispatch pipeline full, so it costs nothing measurable.
IN_FLIGHT = 8


class Trainer:
    """The JAX twin of :class:`diptych.contracts.Trainer` (its docstrings give the shapes)."""

    framework = "jax"

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
        """``precision``: ``fp32``, or ``bf16`` (bfloat16 compute, float32 parameters and optimizer state).
        ``device``: a JAX platform (``cpu``, ``gpu``); the state lives on its first local device.
        ``compile``: ``jax.jit`` the steps (default; ``False`` runs them op by op). ``world``: a world whose
        ``mesh`` spans several devices shards each batch over it and replicates the state
        (:mod:`distributed`); the step is the same pure function, jitted with those shardings."""
        configure()
        self.task = task
        self.model = models.build_model(task.model, seed)
        self.graphdef, params = nnx.split(self.model, nnx.Param)
        self.device = jax.local_devices(backend=device)[0]
        mesh = world.mesh if world is not None else None
        # Where the state lives (one device, or replicated over the mesh) and how a batch is split (None: not).
        self._state_at, self._batch_at = distributed.shardings(mesh) if mesh is not None else (self.device, None)
        # Where the parameters, the optimizer state and the loss live; --shard fsdp: each leaf on its own sharding.
        self._at, place = (self._state_at,) * 3, self._state_at
        self.sharded = mesh is not None and world.sharded
        if self.sharded:
            opt_shapes = jax.eval_shape(make_optimizer(task.optimizer, total_steps).init, params)
            at = distributed.state_shardings
            self._at, place = (at(mesh, params), at(mesh, opt_shapes), self._state_at), (mesh, world.shard)
        self._gathered = None  # sharded parameters gathered for evaluation, until the next step
        self.compute_dtype = {"fp32": None, "bf16": jnp.bfloat16}[precision]
        # The jitted functions, shared by every Trainer of the same model, optimizer, precision and placement.
        key = (task.model, task.optimizer, total_steps, precision, place, self._batch_at, compile is False)
        if key not in _JITTED:
            dt = self.compute_dtype
            _JITTED[key] = _jit(self.graphdef, task.optimizer, total_steps, dt, self._at, *key[5:])
        self.graphdef, self.tx, self._step, self._logits, self._grads = _JITTED[key]
        self.params = self._place(params, self._at[0])
        self.opt_state = self._place(self.tx.init(params), self._at[1])
        self._unhold()
        # Language models carry their recurrent state from one batch to the next (truncated BPTT).
        self.stateful = task.model.carries_state
        self.state = None
        self._in_flight: collections.deque[jax.Array] = collections.deque()  # see IN_FLIGHT

    def _place(self, tree, at):
        """Fresh buffers where the state lives: committed to the device, replicated over the mesh, or sharded."""
        if self.sharded:
            return distributed.place(tree, at)
        if self._batch_at is not None:
            return distributed.to_global(tree, self._state_at)
        return _on_device(jax.device_put(tree, self.device))

    def _unhold(self) -> None:
        """Sharded: the NNX module refers to the shards, so that no whole copy of the parameters stays alive
        beside them (it is given whole parameters only to export them, and let go of them after)."""
        if self.sharded:
            nnx.update(self.model, self.params)

    def _whole(self, tree):
        """This process's whole copy of replicated or sharded state (gathering shards is a collective)."""
        return distributed.local(distributed.gather(tree, self._batch_at.mesh) if self.sharded else tree)

    def _params_here(self):
        """The whole parameters on one device, for evaluation; gathered once per step when sharded."""
        if not self.sharded:
            return distributed.local(self.params)
        if self._gathered is None:
            self._gathered = self._whole(self.params)
        return self._gathered

    def reset_state(self) -> None:
        """Forget the carried recurrent state (the driver calls this at each epoch start)."""
        self.state = None

    def export_carry(self) -> dict[str, np.ndarray]:
        if self.state is None:
            return {}
        # Per layer h (B, H) or (h, c); rows split over this process's devices like the batch (all addressable).
        layers = [c if isinstance(c, tuple) else (c,) for c in self.state]
        return {k: np.stack([np.asarray(c[j]) for c in layers]) for j, k in enumerate(("h", "c")[: len(layers[0])])}

    def load_carry(self, carry: dict[str, np.ndarray]) -> None:
        if not carry:
            self.state = None
            return
        n = len(carry["h"])  # (L, B, H) -> per layer h, or (h, c) for an LSTM
        state = tuple((carry["h"][k], carry["c"][k]) if "c" in carry else carry["h"][k] for k in range(n))
        if self._batch_at is not None:  # rows sharded like the batch
            self.state = distributed.to_global(state, self._batch_at)
        else:
            self.state = _on_device(jax.device_put(state, self.device))  # fresh buffers: see _on_device

    def _carry(self, batch: int, state=None):
        if not self.stateful:
            return None
        return self.model.initial_state(batch) if state is None else state

    def train_step(self, x: np.ndarray, y: np.ndarray, aug: dict[str, np.ndarray] | None = None) -> jax.Array:
        self._gathered = None  # a full copy of sharded parameters lives only from an evaluation to the next step
        carry = self._carry(len(x), self.state)
        if self._batch_at is not None:  # this process's rows of the global batch -> one global array
            x, y = distributed.to_global((x, y), self._batch_at)
            if self.stateful and self.state is None:  # a fresh carry: rows sharded like the batch
                carry = distributed.to_global(carry, self._batch_at)
            if aug is not None:  # per-sample augmentation parameters: rows sharded like the batch
                aug = distributed.to_global(aug, self._batch_at)
        self.params, self.opt_state, loss, self.state = self._step(self.params, self.opt_state, x, y, carry, aug)
        if self._batch_at is not None:  # a bounded number of dispatched, unfinished steps (see IN_FLIGHT)
            self._in_flight.append(loss)
            if len(self._in_flight) > IN_FLIGHT:
                self._in_flight.popleft().block_until_ready()
        return loss  # stays on device; the driver fetches losses in groups

    def losses_to_numpy(self, losses: list[jax.Array]) -> np.ndarray:
        return np.asarray(jax.device_get(losses), dtype=np.float32)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Logits ``(B, classes)`` for inputs ``(B, ...)``. The batch is padded up to a multiple of
        :data:`~diptych.objectives.EVAL_BATCH`, so ``jit`` sees few shapes (each new one compiles)."""
        n = len(x)
        size = -(-n // EVAL_BATCH) * EVAL_BATCH
        if n < size:
            x = np.concatenate([x, np.zeros((size - n, *x.shape[1:]), x.dtype)])
        return np.asarray(self._logits(self._params_here(), x, self._carry(len(x)))[0])[:n]

    def predict_sequence(self, x: np.ndarray, state=None):
        """Language models: logits ``(B, T, V)`` for ids ``x`` ``(B, T)`` continuing from ``state``
        (``None``: zeros), and the state after the last step, for evaluation and generation.
        A transformer's state is its key/value cache (:func:`diptych.language.cached_sequence`)."""
        if self.task.model.decodes_with_cache:
            return cached_sequence(self, x, state, self.task.model.context)
        logits, state = self._logits(self._params_here(), x, self._carry(len(x), state))
        return np.asarray(logits), state

    def new_cache(self, batch: int) -> dict:
        return jax.device_put(transformer.empty_cache(self.task.model, batch), self.device)

    def extend(self, ids: np.ndarray, cache: dict, pos: int):
        """Logits ``(B, T, V)`` for ``ids`` ``(B, T)`` at positions ``pos ..``, and the updated cache: one jitted
        step per ``T`` (``pos`` is traced, so decoding one id at a time compiles once)."""
        logits, cache = transformer.extend(self.graphdef, self._params_here(), ids, cache, np.int32(pos))
        return np.asarray(logits), cache

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray, dict[str, np.ndarray]]:
        """Loss, logits ``(B, classes)`` and canonical-layout gradients on one batch (no update)."""
        (loss, (logits, _)), grads = self._grads(self.params, x, y)
        return float(loss), np.asarray(logits), weights.to_canonical(self.task.model, nnx.to_pure_dict(grads))

    # --- state I/O in canonical / flat form, for weights files and checkpoints
    def _sync_model(self) -> None:
        nnx.update(self.model, self._params_here())

    def export_weights(self) -> dict[str, np.ndarray]:
        self._sync_model()
        out = weights.export(self.model)
        self._unhold()
        return out

    def load_weights(self, params: dict[str, np.ndarray], source: str = "weights") -> None:
        weights.load(self.model, params, source)
        _, params = nnx.split(self.model, nnx.Param)
        self.params, self._gathered = self._place(params, self._at[0]), None
        self._unhold()

    def export_opt_state(self) -> dict[str, np.ndarray]:
        """Optimizer state in the canonical form the torch twin uses (see its docstring)."""
        return weights.opt_state_to_canonical(self.task.model, self._whole(self.opt_state))

    def load_opt_state(self, flat: dict[str, np.ndarray]) -> None:
        spec, params = self.task.model, self._params_here()
        state = weights.opt_state_from_canonical(spec, self._whole(self.opt_state), params, flat)
        self.opt_state = self._place(state, self._at[1])

    def num_params(self) -> int:
        return models.num_params(self.model)

    def held_bytes(self) -> dict[str, int]:
        """Bytes of parameters and optimizer state on this process's devices (its shards), and their totals."""
        return distributed.held_bytes(self.params, self.opt_state)


def versions() -> dict[str, str]:
    import flax
    import jaxlib

    return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "flax": flax.__version__, "optax": optax.__version__}


def runtime(device: str = "cpu") -> dict:
    """How this process computes, for ``run.json``: the backend, its devices and platform version
    (on a GPU: the CUDA version XLA runs on), and the JAX settings that change results or speed."""
    import jax.extend

    names = ("jax_num_cpu_devices", "jax_default_matmul_precision", "jax_enable_x64", "jax_platforms")
    out = {
        "backend": jax.default_backend(),
        "devices": jax.device_count(),
        "local_devices": jax.local_device_count(),
        "cpu_devices": len(jax.devices("cpu")),
        "config": {name: getattr(jax.config, name, None) for name in names},
    }
    try:
        out["platform_version"] = jax.extend.backend.get_backend().platform_version
    except Exception:  # noqa: BLE001 - a record never fails for want of a version string
        pass
    if device != "cpu" and jax.default_backend() != "cpu":
        import importlib.metadata

        plugins = {}
        for name in ("jax-cuda12-plugin", "jax-cuda13-plugin", "jax-cuda12-pjrt", "jax-cuda13-pjrt"):
            try:
                plugins[name] = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                pass
        out["accelerator"] = {"name": jax.devices()[0].device_kind, **plugins}
    return out


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

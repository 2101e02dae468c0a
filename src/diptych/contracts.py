"""The contract between the neutral driver and each twin: the :class:`Trainer` protocol.

``backends/torch/train.py`` and ``backends/jax/train.py`` each define a ``Trainer`` with exactly
these public methods and signatures (``tests/test_contracts.py`` compares them with
:func:`inspect.signature`). Everything crosses the boundary as numpy arrays in the canonical layout
(PyTorch's), so the driver, the objectives and the commands never touch a framework type except
the opaque loss handles that :meth:`Trainer.train_step` returns and
:meth:`Trainer.losses_to_numpy` resolves.

Data parallelism comes in through the constructor: a :class:`~diptych.launch.World` of several
processes (torch: DDP) or with a device ``mesh`` (JAX: the batch split over it) makes the trainer
data-parallel, and a world with ``shard="fsdp"`` shards its parameters and optimizer state; nothing
outside the trainer writes its attributes.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from diptych.launch import World
from diptych.tasks import Task


@runtime_checkable
class Trainer(Protocol):
    """One model, its optimizer and its learning-rate schedule, in one framework.

    Shapes: ``B`` batch, ``T`` time steps, ``V`` vocabulary; a classifier's input ``x`` is
    ``(B, *task.model.input_shape())`` float32, its labels ``y`` ``(B,)`` int32; a language model
    reads ids ``x`` ``(B, T)`` int32 with next-character labels ``y`` ``(B, T)``.
    """

    framework: str  # "torch" or "jax"
    task: Task

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
        """Build the model from ``task.model`` with initialization seed ``seed`` and the optimizer
        from ``task.optimizer`` with a schedule over ``total_steps``.

        ``precision``: ``fp32``, ``bf16`` (bfloat16 compute, float32 weights and optimizer state) or,
        in torch, ``fp64``. ``device``: where the state lives, in the framework's spelling
        (``cpu``, ``cuda:0`` / ``gpu``). ``compile``: ``None`` is the framework's idiom (torch eager,
        JAX ``jit``); ``True`` compiles (``torch.compile``, ``jax.jit``); ``False`` runs op by op.
        ``world``: the data-parallel world from ``backends/<fw>/distributed.init``; ``None`` is one process
        on one device.
        """

    def train_step(self, x: np.ndarray, y: np.ndarray, aug: dict[str, np.ndarray] | None = None) -> Any:
        """One optimizer step on this process's rows of the global batch; returns the mean loss over the
        global batch as a framework handle (fetch it with :meth:`losses_to_numpy`). ``aug``: per-sample
        augmentation parameters drawn by :mod:`diptych.data.augment`, applied on device."""

    def losses_to_numpy(self, losses: list) -> np.ndarray:
        """``(N,)`` float32 from the handles of N steps (one device-to-host transfer)."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Logits ``(B, classes)`` for inputs ``(B, ...)``, in evaluation mode, with no state carried."""

    def predict_sequence(self, x: np.ndarray, state: Any = None) -> tuple[np.ndarray, Any]:
        """Language models: logits ``(B, T, V)`` for ids ``(B, T)`` continuing from ``state`` (``None``:
        zeros), and the state after the last step."""

    def new_cache(self, batch: int) -> Any:
        """Transformer language models: an empty key/value cache for ``batch`` rows, the whole context long."""

    def extend(self, ids: np.ndarray, cache: Any, pos: int) -> tuple[np.ndarray, Any]:
        """Transformer language models: logits ``(B, T, V)`` for ids ``(B, T)`` at positions ``pos ..``,
        their keys and values written into ``cache`` (returned: JAX's is a new value, torch's the same
        tensor written in place). :func:`diptych.language.cached_sequence` builds generation on these two."""

    def reset_state(self) -> None:
        """Forget the recurrent state carried between training batches (each epoch starts from zeros)."""

    def export_carry(self) -> dict[str, np.ndarray]:
        """The recurrent state carried to the next training batch, for a mid-epoch checkpoint: ``h``
        (and ``c`` for an LSTM) ``(layers, B, H)`` float32, as ``torch.nn.LSTM`` holds it; ``{}`` when
        none is carried (classifiers, or a language model at an epoch start)."""

    def load_carry(self, carry: dict[str, np.ndarray]) -> None:
        """Continue from a carried state that :meth:`export_carry` gave (``{}``: none)."""

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray, dict[str, np.ndarray]]:
        """Loss, logits and canonical-layout gradients on one batch, from a zero state, with no update."""

    def export_weights(self) -> dict[str, np.ndarray]:
        """Canonical weights: ``{name: array}`` in PyTorch layout (see :mod:`diptych.weights`). In a world
        with sharded parameters (``world.sharded``) this gathers them: every worker calls it, as it does
        :meth:`export_opt_state`."""

    def load_weights(self, params: dict[str, np.ndarray], source: str = "weights") -> None:
        """Load canonical weights; ``source`` names them in errors."""

    def export_opt_state(self) -> dict[str, np.ndarray]:
        """Optimizer state in canonical form: ``step``, and per parameter ``exp_avg.<name>`` /
        ``exp_avg_sq.<name>`` (Adam, AdamW) or ``momentum_buffer.<name>`` (momentum SGD)."""

    def load_opt_state(self, flat: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`export_opt_state` gave (from either twin), the schedule's step included."""

    def num_params(self) -> int:
        """Number of trainable scalars."""

    def held_bytes(self) -> dict[str, int]:
        """Memory of the training state: ``param_bytes_local`` and ``opt_bytes_local``, what this process
        holds (the sum of its shards' bytes, about 1/N of the whole with ``--shard fsdp`` over N devices),
        ``param_bytes_device`` and ``opt_bytes_device``, what the fullest of its devices holds, and
        ``param_bytes_total``, ``opt_bytes_total``, the whole."""

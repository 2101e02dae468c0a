"""Streaming a pack through Grain: this worker's batch for each step, read from the ArrayRecord shards
and prefetched in background processes.

The pipeline is a ``grain.MapDataset`` over *global step numbers* (``epoch * steps_per_epoch + step``):
element ``g`` is this worker's ``(x, y)`` for that step, whose row indices come from
:meth:`Batches.epoch`'s seeded permutation of ``(seed, epoch)``, never from Grain's own shuffle, so
the torch and JAX twins and the in-memory path get identical batches in identical order. Each element
reads only this worker's rows (a data-parallel worker reads its shard of every global batch and nothing
else). The map runs in ``workers`` background processes (``mp_prefetch``; 0 = threads in this process),
and one iterator runs across epochs, so worker processes start once per run, not once per epoch.

    >>> import tempfile
    >>> from diptych.data import Batches, Dataset
    >>> from diptych.data.packed import open_pack
    >>> from diptych.data.packing import pack_dataset
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.standard_normal((10, 3)).astype(np.float32), np.arange(10, dtype=np.int32)
    >>> folder = tempfile.mkdtemp() + "/toy"
    >>> _ = pack_dataset(Dataset("toy", x, y, x[:2], y[:2]), folder, shards=2, progress=False)
    >>> feed = GrainFeed(open_pack(folder, "toy").x_train.pack, Batches(10, 4, seed=0), workers=0)
    >>> [yb.tolist() for _, yb in feed.epoch(0)] == [y[i].tolist() for i in Batches(10, 4, seed=0).epoch(0)]
    True
    >>> feed.close()
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from diptych.data.batching import Batches
from diptych.data.packed import Pack

HORIZON = 10**9  # steps the (lazy) step dataset spans: far beyond any run


class ReadStep:
    """Global step -> this worker's ``(x, y)``: picklable (it is sent to Grain's worker processes), and
    each process computes an epoch's permutation once and opens its own shard readers."""

    def __init__(self, pack: Pack, batches: Batches):
        self.pack, self.batches, self.steps = pack, batches, batches.steps_per_epoch()
        self._epoch, self._order = None, None

    def __getstate__(self):
        return {"pack": self.pack, "batches": self.batches}

    def __setstate__(self, state):
        self.__init__(state["pack"], state["batches"])

    def indices(self, g: int) -> np.ndarray:
        epoch, step = divmod(int(g), self.steps)
        if epoch != self._epoch:
            self._epoch, self._order = epoch, self.batches.permutation(epoch)
        b = self.batches
        batch = self._order[step * b.batch_size : (step + 1) * b.batch_size]  # as Batches.epoch slices it
        per = len(batch) // b.world
        return batch[b.rank * per : (b.rank + 1) * per]

    def __call__(self, g: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self.pack.read("train", self.indices(g))
        return np.ascontiguousarray(rows["x"]), np.ascontiguousarray(rows["y"])  # (B, ...), (B,) or (B, T)


def _absl_flags_parsed() -> None:
    """Grain reads its settings from absl flags, which a program that is not an absl app never parses:
    take the defaults (else reading a flag raises UnparsedFlagAccessError)."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def _worker_init(index: int, count: int) -> None:  # in each spawned worker process
    _absl_flags_parsed()


class GrainFeed:
    """Batches streamed from a pack through Grain (see the module docstring); the :class:`Feed` protocol."""

    def __init__(self, pack: Pack, batches: Batches, workers: int = 0):
        self.pack, self.batches, self.workers = pack, batches, int(workers)
        self._read = ReadStep(pack, batches)
        self._it, self._next = None, None  # the running iterator, and the global step it yields next

    def _open(self, g0: int):
        import grain

        _absl_flags_parsed()
        ds = grain.MapDataset.range(g0, g0 + HORIZON).map(self._read)
        if self.workers <= 0:  # threads of this process read ahead
            return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=4)))
        ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=2))
        options = grain.MultiprocessingOptions(num_workers=self.workers, per_worker_buffer_size=2)
        return iter(ds.mp_prefetch(options, worker_init_fn=_worker_init))

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """This worker's ``(x, y)`` for steps ``start, ...`` of ``epoch``; consecutive epochs continue the
        same iterator (and its worker processes); any other position starts a new one there."""
        steps = self.batches.steps_per_epoch()
        g0 = epoch * steps + start
        if self._it is None or self._next != g0:
            self.close()
            self._it, self._next = self._open(g0), g0
        for _ in range(start, steps):
            x, y = next(self._it)
            self._next += 1
            # out of Grain's shared memory into plain arrays: its blocks are freed now, not at exit
            yield np.array(x, copy=True, subok=False), np.array(y, copy=True, subok=False)

    def state(self) -> dict:
        """Where the stream stands: the next ``epoch`` and ``step``, and Grain's iterator state (``grain``,
        JSON-ready) for a checkpoint. Resuming needs only ``epoch`` and ``step``: ``feed.epoch(epoch, step)``."""
        steps = self.batches.steps_per_epoch()
        epoch, step = divmod(self._next or 0, steps)
        return {"epoch": epoch, "step": step, "grain": None if self._it is None else self._it.get_state()}

    def close(self) -> None:
        if self._it is not None and hasattr(self._it, "close"):
            self._it.close()
        self._it, self._next = None, None

"""Feeds: where the driver gets each step's training batch, from memory or streamed from packed shards.

A feed turns the seeded :class:`~diptych.data.Batches` (the one source of batch order) into this
worker's ``(x, y)`` rows, step by step. Both twins take batches from the same feed, so they see the
same rows in the same order, and a run resumed at ``(epoch, step)`` continues with the batch it would
have taken next.

    >>> import numpy as np
    >>> from diptych.data import Batches, Dataset
    >>> z = np.zeros((10, 3), np.float32)
    >>> data = Dataset("toy", z, np.arange(10, dtype=np.int32), z, np.zeros(10, np.int32))
    >>> feed = MemoryFeed(data, Batches(10, 4, seed=0))
    >>> [y.shape for _, y in feed.epoch(0, start=1)]
    [(4,)]
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np

from diptych.data.base import Dataset
from diptych.data.batching import Batches


class Feed(Protocol):
    batches: Batches

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """This worker's ``(x, y)`` for steps ``start, start + 1, ...`` of ``epoch``: ``x`` ``(B, ...)``,
        ``y`` ``(B,)`` or ``(B, T)``, ``B`` the global batch divided by the world size."""
        ...

    def close(self) -> None:
        """Stop background workers, if any."""
        ...


class MemoryFeed:
    """Rows read from arrays in memory (the default for data that fits: nothing is faster)."""

    def __init__(self, data: Dataset, batches: Batches) -> None:
        self.data, self.batches = data, batches

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for step, idx in enumerate(self.batches.epoch(epoch)):
            if step >= start:
                yield self.data.x_train[idx], self.data.y_train[idx]  # (B, ...) float32, (B,) int32

    def close(self) -> None:
        pass


def default_workers(world: int = 1) -> int:
    """Background reader processes per training process: a quarter of its share of the cores, at most 4
    (0 on a small machine: the reads then run in threads of the training process, which keeps its cores)."""
    from diptych.launch import usable_cores

    return min(4, usable_cores() // max(world, 1) // 4)


def make_feed(data: Dataset, batches: Batches, workers: int | None = None) -> Feed:
    """The feed for ``data``: streamed through Grain when its training rows are a pack's records
    (:mod:`diptych.data.packed`), else read from memory. ``workers``: background reader processes
    (``None``: :func:`default_workers`; 0: threads in this process)."""
    from diptych.data.packed import RecordArray

    if isinstance(data.x_train, RecordArray):
        from diptych.data.stream import GrainFeed

        return GrainFeed(data.x_train.pack, batches, default_workers(batches.world) if workers is None else workers)
    return MemoryFeed(data, batches)

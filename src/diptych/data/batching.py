"""Seeded batching: the one source of batch order for both twins.

The permutation of epoch ``e`` comes from ``numpy.random.default_rng([seed, e])``, so it does
not depend on how many epochs ran before (resume is exact) or on the framework. ``shard(rank,
world)`` gives each data-parallel worker a disjoint, contiguous slice of the same global batch.

    >>> b = Batches(num_samples=10, batch_size=4, seed=0)
    >>> [len(i) for i in b.epoch(0)]
    [4, 4]
    >>> b.shard(1, 2).steps_per_epoch()
    2
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from diptych.errors import DiptychError


@dataclass(frozen=True)
class Batches:
    num_samples: int
    batch_size: int  # the global batch size
    seed: int = 0
    drop_last: bool = True
    shuffle: bool = True
    rank: int = 0
    world: int = 1

    def __post_init__(self):
        if self.batch_size <= 0:
            raise DiptychError(f"--batch-size must be a positive integer, got {self.batch_size}")
        if self.drop_last and self.batch_size > self.num_samples:
            raise DiptychError(
                f"--batch-size {self.batch_size} is larger than the {self.num_samples} "
                "training samples; choose a smaller batch size"
            )
        if self.batch_size % self.world:
            raise DiptychError(f"--batch-size {self.batch_size} is not divisible by {self.world} workers")

    def shard(self, rank: int, world: int) -> "Batches":
        return replace(self, rank=rank, world=world)

    def steps_per_epoch(self) -> int:
        full, rest = divmod(self.num_samples, self.batch_size)
        return full + (0 if self.drop_last or rest == 0 else 1)

    def permutation(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.num_samples)
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_samples)

    def epoch(self, epoch: int) -> Iterator[np.ndarray]:
        """Yield this worker's index array for each step of ``epoch``."""
        order = self.permutation(epoch)
        for step in range(self.steps_per_epoch()):
            batch = order[step * self.batch_size : (step + 1) * self.batch_size]
            per = len(batch) // self.world
            yield batch[self.rank * per : (self.rank + 1) * per]


def eval_batches(num_samples: int, batch_size: int) -> Iterator[slice]:
    """Contiguous slices covering all samples, for evaluation (no shuffle, last batch kept)."""
    for start in range(0, num_samples, batch_size):
        yield slice(start, min(start + batch_size, num_samples))

"""Framework-neutral data: loaders, IDX parsing, checksummed downloads and seeded batching."""

from diptych.data.batching import Batches, eval_batches
from diptych.data.datasets import DATASETS, Dataset, load_dataset

__all__ = ["Batches", "DATASETS", "Dataset", "eval_batches", "load_dataset"]

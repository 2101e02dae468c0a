"""The record every loader returns, and where data is cached: shared by all the loaders.

Kept apart from the loader registry (:mod:`diptych.data.datasets`) so that a loader of its own
(:mod:`diptych.data.fsdd`) can use them without importing the registry that imports it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diptych.errors import DataError


@dataclass
class Dataset:
    name: str
    x_train: np.ndarray  # (N, ...) float32, standardized
    y_train: np.ndarray  # (N,) int32
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int = 10
    features: dict | None = None  # audio: front-end settings and train-split statistics (JSON-ready)
    ordered: bool = False  # True: rows must be read in order (a language model's TBPTT windows)
    classes: list[str] | None = None  # class names in label order, where the data has them (own image folders)

    def head(self, train: int, test: int | None = None) -> Dataset:
        """The first ``train`` training and ``test`` (default: ``train``) test samples, the rest as it is:
        quick checks of the machinery on a small part of the data.

        >>> x, y = np.zeros((10, 2), np.float32), np.zeros(10, np.int32)
        >>> d = Dataset("toy", x, y, x, y).head(4, 2)
        >>> d.x_train.shape, d.y_test.shape
        ((4, 2), (2,))
        """
        test = train if test is None else test
        return dataclasses.replace(
            self,
            x_train=self.x_train[:train],
            y_train=self.y_train[:train],
            x_test=self.x_test[:test],
            y_test=self.y_test[:test],
        )


def cache_dir() -> Path:
    return Path(os.environ.get("DIPTYCH_CACHE") or Path.home() / ".cache" / "diptych")


def check_data_dir(data_dir: str | Path | None) -> None:
    """A folder the user names must exist: falling back to $DIPTYCH_DATA or the cache would train on
    other data than the user asked for (a typo in --data-dir)."""
    if data_dir is not None and not Path(data_dir).is_dir():
        what = "is a file, not a folder" if Path(data_dir).exists() else "does not exist"
        raise DataError(
            f"--data-dir {data_dir} {what}; check the path (or leave --data-dir out to use $DIPTYCH_DATA or the cache)"
        )

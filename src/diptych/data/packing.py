"""Writing packs (:mod:`diptych.data.packed` describes the format and reads them): a dataset, or rows
streamed a chunk at a time, written to ArrayRecord shards in a temporary folder that is renamed onto
``--out`` only once every shard and the manifest are on disk. Each shard, like every file diptych writes,
goes through the atomic writer (:func:`diptych.fsio.atomic_path`): its mode is a normal file's, and a full
disk ends in one line with the temporary folder removed.

numpy and ``array_record`` only: no torch, no JAX.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from diptych.data._manifest import FORMAT, MANIFEST, check_fields
from diptych.data.base import Dataset
from diptych.data.packed import SHARD_BYTES, WRITER_OPTIONS, record_dtype, sha256_file, shard_name
from diptych.errors import DiptychError
from diptych.fsio import atomic_path, atomic_write, clean_stale_temps, current_umask, temp_prefix, write_error


class PackWriter:
    """Write a pack row by row (the rows of each split in order), into a temporary folder that
    :meth:`finish` renames onto ``out``. Used by :func:`pack` and by the scale benchmark, which streams
    more rows than fit in memory.

    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp()) / "p"
    >>> w = PackWriter(out, "toy", {"train": 6, "test": 2}, np.zeros((3,), np.float32), np.int32(0), shards=2)
    >>> w.add("train", np.ones((6, 3), np.float32), np.arange(6, dtype=np.int32))
    >>> w.add("test", np.ones((2, 3), np.float32), np.zeros(2, np.int32))
    >>> [s["count"] for s in w.finish({"num_classes": 6})["splits"]["train"]["shards"]]
    [3, 3]
    """

    def __init__(self, out, dataset: str, counts: dict[str, int], x_like, y_like, shards: int | None = None):
        from array_record.python.array_record_module import ArrayRecordWriter

        self._writer_cls = ArrayRecordWriter
        self.out, self.dataset, self.counts = Path(out), dataset, counts
        x_like, y_like = np.asarray(x_like), np.asarray(y_like)
        self.fields = {k: {"dtype": v.dtype.name, "shape": list(v.shape)} for k, v in zip("xy", (x_like, y_like))}
        # what the reader would refuse is not written (a loader's rows are float32 and int32 labels)
        check_fields(self.fields, lambda key, problem: DiptychError(f"pack {dataset}: {key} {problem}"))
        if min(counts.values(), default=0) < 1:
            raise DiptychError(f"pack {dataset}: {counts} rows; every split needs at least one")
        self.rec = record_dtype(self.fields)
        if shards is None:
            shards = max(1, math.ceil(counts["train"] * self.rec.itemsize / SHARD_BYTES))
        if shards < 1 or shards > counts["train"]:
            raise DiptychError(f"--shards {shards}: choose 1 to {counts['train']} (the training rows)")
        self.shards = {"train": shards, "test": max(1, math.ceil(counts["test"] * self.rec.itemsize / SHARD_BYTES))}
        self.tmp = make_temp_dir(self.out)
        self._written = {s: 0 for s in counts}
        self._writer, self._current = None, None  # (split, shard index)
        self._atomic = None  # the shard's atomic_path, entered: committed when the shard is closed
        self._done: dict[str, list[dict]] = {s: [] for s in counts}
        self.min = math.inf

    def _bounds(self, split: str) -> np.ndarray:
        """Row where each shard of ``split`` starts (contiguous, near-equal shards), and the end."""
        n, k = self.counts[split], self.shards[split]
        return np.array([i * n // k for i in range(k + 1)])

    @contextlib.contextmanager
    def _named_by_out(self):
        """A failed write names the file as it would be in ``out``, not in the temporary folder."""
        try:
            yield
        except DiptychError as e:
            raise DiptychError(str(e).replace(str(self.tmp), str(self.out))) from None

    def add(self, split: str, x: np.ndarray, y: np.ndarray) -> None:
        """Append rows ``x`` ``(B, *x_shape)`` and labels ``y`` ``(B, *y_shape)`` to ``split``."""
        with self._named_by_out():
            self._add(split, x, y)

    def _add(self, split: str, x: np.ndarray, y: np.ndarray) -> None:
        rows = np.empty(len(x), self.rec)
        rows["x"], rows["y"] = x, y  # casts to the pack's dtypes (the loader's)
        if split == "train" and len(x):
            self.min = min(self.min, float(np.min(x)))
        bounds, start = self._bounds(split), self._written[split]
        if start + len(rows) > self.counts[split]:
            raise DiptychError(f"pack: more {split} rows than the {self.counts[split]} announced")
        raw = rows.tobytes()
        size = self.rec.itemsize
        for j in range(len(rows)):
            shard = int(np.searchsorted(bounds, start + j, side="right")) - 1
            writer = self._writer_for(split, shard)
            try:
                writer.write(raw[j * size : (j + 1) * size])
            except Exception as e:  # ArrayRecord's RuntimeError: the disk, most likely (see _fail)
                self._fail(e)
                raise
        self._written[split] += len(rows)

    def _writer_for(self, split: str, shard: int):
        if self._current != (split, shard):
            self._close_shard()
            path = self.tmp / shard_name(split, shard, self.shards[split])
            self._atomic = atomic_path(path)
            tmp = self._atomic.__enter__()
            self._current = (split, shard)
            try:
                self._writer = self._writer_cls(tmp, WRITER_OPTIONS)
            except Exception as e:
                self._fail(e)
                raise
        return self._writer

    def _fail(self, e: Exception) -> None:
        """The shard being written failed with ``e``: its temporary file goes, and a full disk (or another
        failed write) becomes atomic_path's one line, raised from here; else the caller re-raises ``e``."""
        atomic, self._atomic, self._writer, self._current = self._atomic, None, None, None
        if atomic is not None:
            atomic.__exit__(type(e), e, e.__traceback__)

    def _close_shard(self) -> None:
        if self._writer is None:
            return
        try:
            self._writer.close()  # the last block is written here
        except Exception as e:
            self._fail(e)
            raise
        atomic, self._atomic = self._atomic, None
        atomic.__exit__(None, None, None)  # fsync, rename to the shard's name
        split, shard = self._current
        bounds = self._bounds(split)
        path = self.tmp / shard_name(split, shard, self.shards[split])
        self._done[split].append(
            {
                "file": path.name,
                "count": int(bounds[shard + 1] - bounds[shard]),
                "bytes": path.stat().st_size,
                "sha256": sha256_file(path),
            }
        )
        self._writer, self._current = None, None

    def finish(self, info: dict, source: str | None = None, split_name: str | None = None) -> dict:
        """Close the shards, write the manifest, rename the folder onto ``out``; the manifest."""
        with self._named_by_out():
            self._close_shard()
        for split, n in self.counts.items():
            if self._written[split] != n:
                raise DiptychError(f"pack: {self._written[split]} {split} rows written, {n} announced")
        manifest = {
            "format": FORMAT,
            "dataset": self.dataset,
            "split": split_name,
            "source": source,
            "fields": self.fields,
            "splits": {s: {"count": self.counts[s], "shards": self._done[s]} for s in self.counts},
            "info": info,
            "stats": {"x_min": self.min},
        }
        with self._named_by_out():
            atomic_write(self.tmp / MANIFEST, json.dumps(manifest, indent=1))  # last: marks the folder complete
        try:
            os.chmod(self.tmp, 0o777 & ~current_umask())  # mkdtemp made it private; a pack is shared like any folder
            if self.out.exists():
                self.out.rmdir()  # only an empty folder is replaced (checked in make_temp_dir)
            os.replace(self.tmp, self.out)
        except OSError as e:
            raise write_error(self.out, e) from None
        return manifest

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            if self._writer is not None:
                self._writer.close()
        with contextlib.suppress(Exception):
            if self._atomic is not None:  # its temporary file is removed (with the folder, below, anyway)
                self._fail(RuntimeError("pack aborted"))
        shutil.rmtree(self.tmp, ignore_errors=True)


def check_out(out: Path) -> None:
    """``--out`` must be new (or an empty folder): a pack never overwrites anything, nor writes through a link."""
    if out.is_symlink():
        raise DiptychError(f"--out {out} is a symbolic link; pass a new folder (a pack is not written through links)")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DiptychError(f"--out {out} already exists and is not an empty folder; choose a new folder or delete it")


def make_temp_dir(out: Path) -> Path:
    """A fresh temporary folder beside ``out`` (after removing ones left by packs that were killed)."""
    check_out(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_temps(out.parent)  # the temporary folders of killed packs
        return Path(tempfile.mkdtemp(prefix=temp_prefix(), suffix=f".{out.name[-80:]}", dir=out.parent))
    except OSError as e:
        raise write_error(out, e) from None


def pack_dataset(data: Dataset, out, shards: int | None = None, split: str | None = None, source=None, progress=True):
    """Write ``data`` (any loader's :class:`Dataset`) to a pack at ``out``; its manifest."""
    from rich.progress import Progress

    from diptych.progress import console

    if data.ordered:
        raise DiptychError(f"{data.name}: a language model's windows are read in order; it is not packed")
    counts = {"train": len(data.y_train), "test": len(data.y_test)}
    writer = PackWriter(out, data.name, counts, data.x_train[0], data.y_train[0], shards)
    chunk = max(1, (64 * 2**20) // writer.rec.itemsize)
    try:
        with Progress(console=console, disable=not progress, transient=True) as bar:
            task = bar.add_task(f"packing {data.name}", total=sum(counts.values()))
            for name, x, y in (("train", data.x_train, data.y_train), ("test", data.x_test, data.y_test)):
                for s in range(0, len(y), chunk):
                    writer.add(name, x[s : s + chunk], y[s : s + chunk])
                    bar.advance(task, len(y[s : s + chunk]))
        info = {"num_classes": data.num_classes, "features": data.features, "classes": data.classes}
        return writer.finish(info, source=source, split_name=split)
    except BaseException:
        writer.abort()
        raise

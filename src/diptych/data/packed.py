"""Packed datasets: a dataset written once to ArrayRecord shards, then read record by record.

``diptych data pack DATASET --out DIR`` writes ``DIR/``::

    manifest.json                          what is in the pack (below); written last
    train-00000-of-00004.array_record      the training split, contiguous rows per shard
    ...
    test-00000-of-00001.array_record       the test split (loaded into memory for evaluation)

**Records.** One record is one example, a fixed-size little-endian row of the numpy structured dtype
``[("x", dtype, shape), ("y", dtype, shape)]``: the input's bytes exactly as the loader gives them
(float32, already standardized) followed by the label's (int32, a scalar or a row). Fixed-size records
decode a batch with one ``np.frombuffer`` and make a truncated record detectable by its length. Shards
are written with ``group_size:1`` (one record per chunk: random access reads just that record) and
uncompressed (float32 inputs barely compress; reads stay cheap).

**manifest.json.** ``format`` (:data:`FORMAT`), ``dataset``, ``split``, ``fields`` (dtype and shape
of ``x`` and ``y``), ``splits`` (per split: ``count`` and ``shards``, each with ``file``, ``count``,
``bytes`` and ``sha256``), ``info`` (what the loader gives besides arrays: ``num_classes``,
``features``, ``classes``) and ``stats`` (``x_min``: the standardized black that augmentation fills
with, so it needs no pass over the data).

**Safety.** A pack is written into a temporary folder beside ``--out`` (``.diptych-tmp-<pid>-...``) and
renamed onto ``--out`` only when every shard and the manifest are on disk, so a killed pack never
leaves a folder that looks complete. Opening a pack (:func:`open_pack`) checks cheaply: the manifest's
format and dataset, each shard's presence, size and record count, and each record's length as it is
read; the SHA-256 of every shard is checked on open only for packs up to :data:`HASH_ON_OPEN_BYTES`
(a multi-GB pack is not hashed at every run start: ``diptych data verify DIR`` hashes everything).
Any failure is one :class:`DataError` line naming the shard and the fix.

numpy and ``array_record`` only: no torch, no JAX.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diptych.data.base import Dataset
from diptych.errors import DataError, DiptychError
from diptych.fsio import TEMP_PREFIX, atomic_write, write_error

FORMAT = "diptych-pack/1"
MANIFEST = "manifest.json"
SUFFIX = ".array_record"
WRITER_OPTIONS = "group_size:1,uncompressed"
SHARD_BYTES = 256 * 2**20  # default shard size when --shards is not given
HASH_ON_OPEN_BYTES = 512 * 2**20  # packs up to this size are SHA-256-checked each time they are opened
SPLITS = ("train", "test")


def is_packed(folder: str | Path | None) -> bool:
    """True when ``folder`` holds a pack's manifest (ours, by its name; its content is checked on open)."""
    return folder is not None and (Path(folder) / MANIFEST).is_file()


def record_dtype(fields: dict) -> np.dtype:
    """The structured dtype of one record from the manifest's ``fields``."""
    return np.dtype([(k, np.dtype(fields[k]["dtype"]).newbyteorder("<"), tuple(fields[k]["shape"])) for k in "xy"])


def shard_name(split: str, i: int, n: int) -> str:
    return f"{split}-{i:05d}-of-{n:05d}{SUFFIX}"


def sha256_file(path: Path, chunk: int = 8 * 2**20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- writing


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
        self.rec = record_dtype(self.fields)
        if shards is None:
            shards = max(1, math.ceil(counts["train"] * self.rec.itemsize / SHARD_BYTES))
        if shards < 1 or shards > counts["train"]:
            raise DiptychError(f"--shards {shards}: choose 1 to {counts['train']} (the training rows)")
        self.shards = {"train": shards, "test": max(1, math.ceil(counts["test"] * self.rec.itemsize / SHARD_BYTES))}
        self.tmp = make_temp_dir(self.out)
        self._written = {s: 0 for s in counts}
        self._writer, self._current = None, None  # (split, shard index)
        self._done: dict[str, list[dict]] = {s: [] for s in counts}
        self.min = math.inf

    def _bounds(self, split: str) -> np.ndarray:
        """Row where each shard of ``split`` starts (contiguous, near-equal shards), and the end."""
        n, k = self.counts[split], self.shards[split]
        return np.array([i * n // k for i in range(k + 1)])

    def add(self, split: str, x: np.ndarray, y: np.ndarray) -> None:
        """Append rows ``x`` ``(B, *x_shape)`` and labels ``y`` ``(B, *y_shape)`` to ``split``."""
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
            self._writer_for(split, shard).write(raw[j * size : (j + 1) * size])
        self._written[split] += len(rows)

    def _writer_for(self, split: str, shard: int):
        if self._current != (split, shard):
            self._close_shard()
            path = self.tmp / shard_name(split, shard, self.shards[split])
            self._writer, self._current = self._writer_cls(str(path), WRITER_OPTIONS), (split, shard)
        return self._writer

    def _close_shard(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
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
        atomic_write(self.tmp / MANIFEST, json.dumps(manifest, indent=1))  # last: marks the folder complete
        try:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self.tmp, 0o777 & ~umask)  # mkdtemp made it private; a pack is shared like any folder
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
        shutil.rmtree(self.tmp, ignore_errors=True)


def check_out(out: Path) -> None:
    """``--out`` must be new (or an empty folder): a pack never overwrites anything."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DiptychError(f"--out {out} already exists and is not an empty folder; choose a new folder or delete it")


def make_temp_dir(out: Path) -> Path:
    """A fresh temporary folder beside ``out`` (after removing ones left by packs that were killed)."""
    check_out(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_temp_dirs(out.parent)
        return Path(
            tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", suffix=f".{out.name[-80:]}", dir=out.parent)
        )
    except OSError as e:
        raise write_error(out, e) from None


def clean_stale_temp_dirs(folder: Path) -> None:
    """Remove temporary pack folders whose packing process is gone (a killed pack)."""
    import psutil

    for entry in folder.glob(f"{TEMP_PREFIX}*"):
        pid = entry.name[len(TEMP_PREFIX) :].split("-", 1)[0]
        if entry.is_dir() and not entry.is_symlink() and pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


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


# ----------------------------------------------------------------------------- reading


@dataclass
class Pack:
    """An opened pack: its folder and manifest, and readers of its splits (opened lazily, per process)."""

    folder: Path
    manifest: dict

    def __post_init__(self):
        self.rec = record_dtype(self.manifest["fields"])
        self._sources: dict[str, object] = {}

    def __getstate__(self):  # pickled into Grain's worker processes: readers are reopened there
        return {"folder": self.folder, "manifest": self.manifest}

    def __setstate__(self, state):
        self.__init__(state["folder"], state["manifest"])

    def shards(self, split: str) -> list[dict]:
        return self.manifest["splits"][split]["shards"]

    def count(self, split: str) -> int:
        return self.manifest["splits"][split]["count"]

    def _source(self, split: str):
        if split not in self._sources:
            from array_record.python.array_record_data_source import ArrayRecordDataSource

            # "path[0:n]": the counts come from the manifest (checked on open), no reader is opened here
            paths = [f"{self.folder / s['file']}[0:{s['count']}]" for s in self.shards(split)]
            self._sources[split] = ArrayRecordDataSource(paths)
        return self._sources[split]

    def shard_of(self, split: str, index: int) -> str:
        ends = np.cumsum([s["count"] for s in self.shards(split)])
        return self.shards(split)[int(np.searchsorted(ends, index, side="right"))]["file"]

    def read(self, split: str, indices) -> np.ndarray:
        """The records at ``indices`` (global row numbers) as a structured array ``(len(indices),)``."""
        indices = np.asarray(indices, np.int64).reshape(-1)
        n = self.count(split)
        if indices.size and (indices.min() < -n or indices.max() >= n):
            raise IndexError(f"index out of range for the {n} {split} records of {self.folder}")
        indices = np.where(indices < 0, indices + n, indices)
        try:
            records = self._source(split).__getitems__(indices.tolist())
        except Exception as e:  # riegeli reports a damaged chunk as its own error type
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            where = ", ".join(sorted({self.shard_of(split, int(i)) for i in indices[:1024]}))
            raise DataError(
                f"{self.folder}: reading {split} records from {where} failed ({first}); the pack is damaged: "
                f"run `diptych data verify {self.folder}` to name the shard, then pack again"
            ) from None
        size = self.rec.itemsize
        for j, r in enumerate(records):
            if len(r) != size:
                raise DataError(
                    f"{self.folder / self.shard_of(split, int(indices[j]))}: record {int(indices[j])} is "
                    f"{len(r)} bytes, the manifest's fields make {size}; the shard is damaged "
                    f"(truncated record): pack the dataset again"
                )
        return np.frombuffer(b"".join(records), self.rec) if records else np.empty(0, self.rec)

    def read_all(self, split: str) -> np.ndarray:
        return self.read(split, np.arange(self.count(split)))


class RecordArray:
    """One field (``x`` or ``y``) of a pack's training split, read lazily: indexing with an index array
    (or a slice, or an int) reads just those records. Has ``len``, ``shape``, ``dtype``, ``ndim`` and
    ``min()`` (from the manifest), so code written for an ``np.ndarray`` of rows keeps working."""

    def __init__(self, pack: Pack, field: str, split: str = "train"):
        self.pack, self.field, self.split = pack, field, split
        spec = pack.manifest["fields"][field]
        self.dtype = np.dtype(spec["dtype"])
        self.shape = (pack.count(split), *spec["shape"])
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, slice):
            rows = self.pack.read(self.split, np.arange(len(self))[index])
        elif np.ndim(index) == 0:
            return self[np.asarray([index])][0]
        else:
            rows = self.pack.read(self.split, index)
        return np.ascontiguousarray(rows[self.field], dtype=self.dtype)  # (B, *shape)

    def min(self) -> float:
        if self.field != "x":
            raise DiptychError("min() of a packed field is known for x only")
        return self.pack.manifest["stats"]["x_min"]

    def __repr__(self) -> str:
        return f"RecordArray({self.pack.folder}, {self.field}, shape={self.shape}, dtype={self.dtype})"


def read_manifest(folder: Path) -> dict:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{folder / MANIFEST}: cannot read it ({e}); pack the dataset again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(
            f"{folder / MANIFEST} is not a diptych pack manifest (format {FORMAT} expected); "
            f"pass a folder written by `diptych data pack`"
        )
    return manifest


def check_files(folder: Path, manifest: dict, hash_all: bool) -> None:
    """Each shard present, of the manifest's size (and SHA-256 when ``hash_all``); one line naming a bad one."""
    for split in SPLITS:
        for shard in manifest["splits"][split]["shards"]:
            path = folder / shard["file"]
            if not path.is_file():
                raise DataError(f"{path}: shard missing (listed in {MANIFEST}); copy the whole pack or pack again")
            if (size := path.stat().st_size) != shard["bytes"]:
                raise DataError(
                    f"{path}: {size} bytes, the manifest says {shard['bytes']}; the shard is truncated or "
                    f"damaged: pack the dataset again"
                )
            if hash_all and (got := sha256_file(path)) != shard["sha256"]:
                raise DataError(
                    f"{path}: SHA-256 {got[:16]}... does not match the manifest's {shard['sha256'][:16]}...; "
                    f"the shard is damaged: pack the dataset again"
                )


def check_counts(folder: Path, manifest: dict) -> None:
    """Each shard holds the manifest's number of records (read from the shard's index: cheap)."""
    from array_record.python.array_record_module import ArrayRecordReader

    for split in SPLITS:
        for shard in manifest["splits"][split]["shards"]:
            path = folder / shard["file"]
            try:
                reader = ArrayRecordReader(str(path))
                n = reader.num_records()
                reader.close()
            except Exception as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise DataError(f"{path}: not a readable ArrayRecord shard ({first}); pack the dataset again") from None
            if n != shard["count"]:
                raise DataError(
                    f"{path}: {n} records, the manifest says {shard['count']}; the shard is damaged: pack again"
                )


def verify(folder: str | Path) -> dict:
    """Check a pack completely (manifest, every shard's presence, size, SHA-256, record count and
    record lengths); the manifest, or one :class:`DataError` line naming the bad shard."""
    folder = Path(folder)
    if not is_packed(folder):
        raise DataError(f"{folder} has no {MANIFEST}: not a finished pack; pack the dataset again")
    manifest = read_manifest(folder)
    check_files(folder, manifest, hash_all=True)
    check_counts(folder, manifest)
    pack = Pack(folder, manifest)
    for split in SPLITS:  # every record's length, a chunk at a time
        n, step = pack.count(split), max(1, (32 * 2**20) // pack.rec.itemsize)
        for s in range(0, n, step):
            pack.read(split, np.arange(s, min(n, s + step)))
    return manifest


def open_pack(folder: str | Path, name: str, split: str | None = None, hash_on_open: bool | None = None) -> Dataset:
    """The pack at ``folder`` as a :class:`Dataset` of ``name``: ``x_train``/``y_train`` are
    :class:`RecordArray` (read lazily), ``x_test``/``y_test`` are in memory."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest.get("dataset") != name:
        raise DataError(
            f"{folder} is a pack of {manifest.get('dataset')!r}, not {name!r}; pass a pack of {name} "
            f"(`diptych data pack {name} --out DIR`)"
        )
    if split not in (None, manifest.get("split")):
        raise DataError(
            f"{folder} was packed with split {manifest.get('split')!r}, not {split!r}; "
            f"pack again with `diptych data pack {name} --split {split}`"
        )
    total = sum(s["bytes"] for sp in SPLITS for s in manifest["splits"][sp]["shards"])
    hash_all = total <= HASH_ON_OPEN_BYTES if hash_on_open is None else hash_on_open
    check_files(folder, manifest, hash_all=hash_all)
    check_counts(folder, manifest)
    pack = Pack(folder, manifest)
    test = pack.read_all("test")
    info = manifest.get("info") or {}
    return Dataset(
        name,
        RecordArray(pack, "x"),  # type: ignore[arg-type]  (array-like: read on demand)
        RecordArray(pack, "y"),  # type: ignore[arg-type]
        np.ascontiguousarray(test["x"]),
        np.ascontiguousarray(test["y"]),
        num_classes=info.get("num_classes", 10),
        features=info.get("features"),
        classes=info.get("classes"),
    )


def unfinished_pack(folder: str | Path | None) -> bool:
    """Shards without a manifest: a folder a pack was copied into halfway, or renamed by hand."""
    return folder is not None and not is_packed(folder) and any(Path(folder).glob(f"*{SUFFIX}"))

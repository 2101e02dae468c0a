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

**manifest.json.** ``format`` (``diptych-pack/1``), ``dataset``, ``split``, ``fields`` (dtype and shape
of ``x`` and ``y``), ``splits`` (per split: ``count`` and ``shards``, each with ``file``, ``count``,
``bytes`` and ``sha256``), ``info`` (what the loader gives besides arrays: ``num_classes``,
``features``, ``classes``) and ``stats`` (``x_min``: the standardized black that augmentation fills
with, so it needs no pass over the data). The manifest is untrusted input: it is checked against one
schema before anything reads it, and every shard must be a plain file name inside the pack folder, a
symlink leading out of it refused when the shard is opened (:mod:`diptych.data._manifest`).

**Safety.** A pack is written into a temporary folder beside ``--out`` (``.diptych-tmp-<pid>-...``) and
renamed onto ``--out`` only when every shard and the manifest are on disk, so a killed pack never
leaves a folder that looks complete. Opening a pack (:func:`open_pack`) checks cheaply: the manifest
(its schema, its dataset), each shard's presence, size and record count, and each record's length as it is
read; the SHA-256 of every shard is checked on open only for packs up to :data:`HASH_ON_OPEN_BYTES`
(a multi-GB pack is not hashed at every run start: ``diptych data verify DIR`` hashes everything).
Any failure is one :class:`DataError` line naming the shard and the fix.

numpy and ``array_record`` only: no torch, no JAX.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diptych.data._manifest import MANIFEST, SPLITS, SUFFIX, read_manifest, shard_path
from diptych.data.base import Dataset
from diptych.errors import DataError, DiptychError

WRITER_OPTIONS = "group_size:1,uncompressed"
SHARD_BYTES = 256 * 2**20  # default shard size when --shards is not given
HASH_ON_OPEN_BYTES = 512 * 2**20  # packs up to this size are SHA-256-checked each time they are opened


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


# ----------------------------------------------------------------------------- reading


@dataclass
class Pack:
    """An opened pack: its folder and manifest, and readers of its splits (opened lazily, per process)."""

    folder: Path
    manifest: dict

    def __post_init__(self):
        self.rec = record_dtype(self.manifest["fields"])
        self._local = threading.local()  # readers per thread: a reader holds a file position

    def __getstate__(self):  # pickled into Grain's worker processes: readers are reopened there
        return {"folder": self.folder, "manifest": self.manifest}

    def __setstate__(self, state):
        self.__init__(state["folder"], state["manifest"])

    def shards(self, split: str) -> list[dict]:
        return self.manifest["splits"][split]["shards"]

    def count(self, split: str) -> int:
        return self.manifest["splits"][split]["count"]

    def _reader(self, split: str, k: int):
        """Shard ``k``'s reader in this thread, opened on first use. No read-ahead and no reader threads:
        a batch reads records from all over the pack, one at a time."""
        readers = self._local.__dict__.setdefault(split, {})
        if k not in readers:
            from array_record.python.array_record_module import ArrayRecordReader

            path = shard_path(self.folder, self.shards(split)[k]["file"])
            readers[k] = ArrayRecordReader(str(path), "readahead_buffer_size:0,max_parallelism:1")
        return readers[k]

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
        counts = np.asarray([s["count"] for s in self.shards(split)])
        ends = np.cumsum(counts)
        which = np.searchsorted(ends, indices, side="right")  # the shard of each record
        at = indices - (ends - counts)[which]  # its position in the shard
        try:
            # One record per call, as a range: reading a list of positions costs ~20x more per call
            # (ArrayRecord sets up a parallel read each time), and a batch holds ~2 records per shard.
            records = [self._reader(split, k).read(p, p + 1)[0] for k, p in zip(which.tolist(), at.tolist())]
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


def check_files(folder: Path, manifest: dict, hash_all: bool) -> None:
    """Each shard present, of the manifest's size (and SHA-256 when ``hash_all``), and no file read as two
    shards (through a symlink or a hard link: test rows trained on); one line naming a bad one."""
    seen: dict[tuple[int, int], str] = {}
    for split in SPLITS:
        for shard in manifest["splits"][split]["shards"]:
            path = shard_path(folder, shard["file"])
            if not path.is_file():
                raise DataError(f"{path}: shard missing (listed in {MANIFEST}); copy the whole pack or pack again")
            st = path.stat()
            if (other := seen.setdefault((st.st_dev, st.st_ino), shard["file"])) != shard["file"]:
                raise DataError(f"{path}: the same file as the shard {other}; pack the dataset again")
            if (size := st.st_size) != shard["bytes"]:
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
            path = shard_path(folder, shard["file"])
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

"""(private) A pack's ``manifest.json``, checked before anything reads it (:mod:`diptych.data.packed`
describes the format).

A manifest is untrusted input like any file: it may be damaged, edited by hand, or written to make
``diptych`` read a file outside the pack. :func:`read_manifest` therefore checks it against one schema
before any reader sees it: every key of the format present and no other, each of its type and range
(record counts positive integers that add up per split, dtypes from :data:`DTYPES`, shapes of positive
sides within bounds), and every shard a plain file name inside the pack folder (:func:`shard_path`
checks the resolved path again when the shard is opened: a symlink that leads out is refused too).
Any departure is one :class:`DataError` line naming the key and the problem.

numpy-free and framework-free: the standard library only.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from diptych.errors import DataError

FORMAT = "diptych-pack/1"
MANIFEST = "manifest.json"
SUFFIX = ".array_record"
SPLITS = ("train", "test")
# The Dataset contract (data/base.py): standardized float32 inputs, int32 labels. Any other dtype in a
# manifest would reinterpret the records' bytes (a float32 row read as int32 has the same length).
DTYPES = {"x": ("float32",), "y": ("int32",)}
NDIM = {"x": 4, "y": 1}  # an input is a row, an image or a stack of channels; a label a scalar or a row
MAX_SIDE = 2**20
MAX_RECORD_BYTES = 64 * 2**20  # one example: far above a 512x512 RGB float32 image (3 MiB)
MAX_COUNT = 2**40  # records per split: beyond any real pack, and exact in int64 sums
MAX_SHARD_BYTES = 2**50
MAX_MANIFEST_BYTES = 16 * 2**20  # ~100,000 shards; a bigger manifest.json is not ours
MAX_CLASSES = 2**20
SHA256 = re.compile(r"[0-9a-f]{64}")

# The format's keys at each level: required, and optional (absent is None).
TOP = ("format", "dataset", "split", "source", "fields", "splits", "info", "stats")
FIELD = ("dtype", "shape")
SPLIT = ("count", "shards")
SHARD = ("file", "count", "bytes", "sha256")
INFO, INFO_OPTIONAL = ("num_classes",), ("features", "classes")
STATS = ("x_min",)


def read_manifest(folder: Path) -> dict:
    """``folder``'s manifest, parsed and checked (:func:`check_manifest`); one line if anything is wrong."""
    path = folder / MANIFEST
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_MANIFEST_BYTES + 1)
        if len(raw) > MAX_MANIFEST_BYTES:
            raise ValueError(f"over {MAX_MANIFEST_BYTES // 2**20} MiB")
        manifest = json.loads(raw)
    except RecursionError:  # json nests one Python call per bracket
        raise DataError(f"{path}: cannot read it (nested too deeply); pack the dataset again") from None
    except (OSError, ValueError) as e:  # ValueError: bad JSON or UTF-8, an integer of thousands of digits
        raise DataError(f"{path}: cannot read it ({_first_line(e)}); pack the dataset again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(
            f"{path} is not a diptych pack manifest (format {FORMAT} expected); "
            f"pass a folder written by `diptych data pack`"
        )
    return check_manifest(manifest, path)


def check_manifest(manifest, where) -> dict:
    """``manifest`` unchanged if it follows the schema (module docstring), else one :class:`DataError`
    line naming the first bad key (``where``: the file, for the message)."""

    def bad(key: str, problem: str) -> DataError:
        return DataError(
            f"{where}: {key} {problem}; the manifest is damaged or was edited: pack the dataset again "
            f"(`diptych data pack`)"
        )

    _keys(manifest, "", TOP, (), bad)
    if not isinstance(manifest["dataset"], str) or not manifest["dataset"]:
        raise bad("dataset", f"is {_show(manifest['dataset'])}, not a dataset name")
    for key in ("split", "source"):
        if manifest[key] is not None and not isinstance(manifest[key], str):
            raise bad(key, f"is {_show(manifest[key])}, not a string or null")
    check_fields(manifest["fields"], bad)
    _keys(manifest["splits"], "splits", SPLITS, (), bad)
    files: set[str] = set()
    for split in SPLITS:
        at = f"splits.{split}"
        entry = manifest["splits"][split]
        _keys(entry, at, SPLIT, (), bad)
        total = _int(entry["count"], f"{at}.count", 1, MAX_COUNT, bad)
        shards = entry["shards"]
        if not isinstance(shards, list) or not 1 <= len(shards) <= total:
            raise bad(f"{at}.shards", f"is {_show(shards)}, not a list of 1 to {total} shards (of 1 record or more)")
        counted = 0
        for i, shard in enumerate(shards):
            here = f"{at}.shards[{i}]"
            _keys(shard, here, SHARD, (), bad)
            name = shard["file"]
            if problem := file_name_problem(name):
                raise bad(f"{here}.file", f"{_show(name)} {problem}")
            if name in files:  # two entries reading one file: rows counted twice, or test rows trained on
                raise bad(f"{here}.file", f"{_show(name)} is listed twice")
            files.add(name)
            counted += _int(shard["count"], f"{here}.count", 1, MAX_COUNT, bad)
            _int(shard["bytes"], f"{here}.bytes", 0, MAX_SHARD_BYTES, bad)
            if not isinstance(shard["sha256"], str) or not SHA256.fullmatch(shard["sha256"]):
                raise bad(f"{here}.sha256", f"is {_show(shard['sha256'])}, not 64 lowercase hex digits")
        if counted != total:
            raise bad(f"{at}.count", f"is {total}, its shards' counts add up to {counted}")
    info = manifest["info"]
    _keys(info, "info", INFO, INFO_OPTIONAL, bad)
    classes = _int(info["num_classes"], "info.num_classes", 1, MAX_CLASSES, bad)
    names = info.get("classes")
    if names is not None and (
        not isinstance(names, list)
        or len(names) != classes
        or not all(isinstance(c, str) and c for c in names)
        or len(set(names)) != len(names)
    ):
        raise bad("info.classes", f"is {_show(names)}, not {classes} distinct class names (or null)")
    if info.get("features") is not None and not isinstance(info["features"], dict):
        raise bad("info.features", f"is {_show(info['features'])}, not an object or null")
    _keys(manifest["stats"], "stats", STATS, (), bad)
    x_min = manifest["stats"]["x_min"]
    # abs() <= 1e30: finite as the float32 fill value, and no float() overflow of a 400-digit integer
    if isinstance(x_min, bool) or not isinstance(x_min, int | float) or not abs(x_min) <= 1e30:
        raise bad("stats.x_min", f"is {_show(x_min)}, not a finite number")
    return manifest


def check_fields(fields, bad) -> int:
    """The bytes of one record that ``fields`` describe (``x`` and ``y``: a dtype of :data:`DTYPES` and
    a shape of positive sides), or ``bad(key, problem)`` raised. The writer checks its fields with it too."""
    _keys(fields, "fields", ("x", "y"), (), bad)
    total = 0
    for k in ("x", "y"):
        spec = fields[k]
        _keys(spec, f"fields.{k}", FIELD, (), bad)
        if not isinstance(spec["dtype"], str) or spec["dtype"] not in DTYPES[k]:
            raise bad(f"fields.{k}.dtype", f"is {_show(spec['dtype'])}, not {' or '.join(DTYPES[k])}")
        shape = spec["shape"]
        if not isinstance(shape, list) or len(shape) > NDIM[k]:
            raise bad(f"fields.{k}.shape", f"is {_show(shape)}, not a list of at most {NDIM[k]} sides")
        for i, side in enumerate(shape):
            _int(side, f"fields.{k}.shape[{i}]", 1, MAX_SIDE, bad)
        total += 4 * math.prod(shape)  # both dtypes are 4 bytes wide
        if total > MAX_RECORD_BYTES:
            raise bad(f"fields.{k}.shape", f"{shape} makes records over {MAX_RECORD_BYTES // 2**20} MiB")
    return total


def file_name_problem(name) -> str | None:
    """Why ``name`` is not a plain shard file name inside the pack folder (``None`` if it is one)."""
    if not isinstance(name, str):
        return "is not a file name"
    if "/" in name or "\\" in name or "\0" in name or name in ("", ".", "..") or Path(name).is_absolute():
        return "is not a plain file name in the pack folder (a path, or outside the pack)"
    if not name.endswith(SUFFIX) or len(name) > 255:
        return f"is not a shard's name (NAME{SUFFIX}, at most 255 characters)"
    return None


def shard_path(folder: Path, name: str) -> Path:
    """The shard ``name`` of the pack at ``folder``, refused unless it resolves inside the folder (a
    symlink leading out of the pack is not read)."""
    path = folder / name
    if problem := file_name_problem(name):
        raise DataError(f"{path}: {problem}; pack the dataset again")
    try:
        root, target = folder.resolve(), path.resolve()
    except (OSError, RuntimeError) as e:  # RuntimeError: a symlink loop (Python < 3.13)
        raise DataError(f"{path}: cannot follow its links ({_first_line(e)}); pack the dataset again") from None
    if target == root or not target.is_relative_to(root):
        raise DataError(
            f"{path}: a link leading out of the pack (to {target}); a pack reads only its own files: "
            f"copy the shard into the pack, or pack the dataset again"
        )
    return path


def _keys(value, at: str, need: tuple, optional: tuple, bad) -> None:
    if not isinstance(value, dict):
        raise bad(at or "the manifest", f"is {_show(value)}, not an object")
    for k in need:
        if k not in value:
            raise bad(f"{at}.{k}" if at else k, "is missing")
    for k in value:
        if k not in need and k not in optional:
            raise bad(at or "the manifest", f"has an unknown key {_show(k)}")


def _int(value, key: str, lo: int, hi: int, bad) -> int:
    """``value`` if it is an integer (not a bool, not a float such as 3.0 or NaN) from ``lo`` to ``hi``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(key, f"is {_show(value)}, not an integer")
    if not lo <= value <= hi:
        raise bad(key, f"is {_show(value)}, outside {lo} to {hi:,}")
    return value


def _show(value) -> str:
    """A value for a one-line message: short, and a container by its kind (its repr could be huge)."""
    if isinstance(value, dict | list):
        return f"an {'object' if isinstance(value, dict) else 'array'} of {len(value)}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__

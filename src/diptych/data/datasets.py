"""Datasets as plain numpy arrays: MNIST, Fashion-MNIST (IDX files) and MNIST-1D (generated).

Every loader returns a :class:`Dataset` with float32 inputs standardized by the training
split's mean and std (``x_train`` is ``(N, 28, 28)`` for the image sets, ``(N, 40)`` for
MNIST-1D) and int32 labels. Where the IDX files are looked for, in order:

1. ``--data-dir`` (the folder itself, or its ``<name>/`` subfolder);
2. ``$DIPTYCH_DATA/<name>/``;
3. the user cache, ``$DIPTYCH_CACHE`` or ``~/.cache/diptych``, under ``<name>/``;
4. else they are downloaded from the public mirrors into the cache, MD5-checked (unless
   ``$DIPTYCH_OFFLINE`` is set, as in the tests, which then fail with where to put the files).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diptych.data.audio import FSDD_FRONTEND, FrontEnd
from diptych.data.base import Dataset, cache_dir, check_data_dir
from diptych.data.download import fetch, md5sum
from diptych.data.fsdd import load_fsdd
from diptych.data.idx import is_gzip, read_idx
from diptych.data.packed import MANIFEST, is_packed, open_pack, unfinished_pack
from diptych.errors import DataError, DiptychError
from diptych.fsio import atomic_write, clean_stale_temps


@dataclass(frozen=True)
class IdxSource:
    files: dict[str, str]  # role -> (file name, md5) below
    md5: dict[str, str]
    mirrors: tuple[str, ...]


_ROLES = ("train_images", "train_labels", "test_images", "test_labels")
_MNIST_FILES = dict(
    zip(
        _ROLES,
        ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    )
)

IDX_SOURCES = {
    "mnist": IdxSource(
        files=_MNIST_FILES,
        md5=dict(
            zip(
                _ROLES,
                (
                    "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                    "d53e105ee54ea40749a09fcbcd1e9432",
                    "9fb629c4189551a2d022fa330f9573f3",
                    "ec29112dd5afa0611ce80d1b7f02629c",
                ),
            )
        ),
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
    ),
    "fashion-mnist": IdxSource(
        files=_MNIST_FILES,
        md5=dict(
            zip(
                _ROLES,
                (
                    "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                    "25c81989df183df01b3e8a0aad5dffbe",
                    "bef4ecab320f06d8554ea6380940ec79",
                    "bb300cfdad3c16e7a12a480ee83cd310",
                ),
            )
        ),
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
        ),
    ),
}

DATASETS = ("mnist", "fashion-mnist", "mnist1d", "fsdd")
AUDIO_DATASETS = ("fsdd",)  # recordings: `diptych transcribe` takes tasks trained on these


def default_split(name: str) -> str | None:
    """The split a run uses unless ``--split`` says otherwise (``None``: the dataset has only one)."""
    return "official" if name == "fsdd" else None


NORMALIZATIONS = ("standard", "half")  # IDX images: the training split's mean/std, or Normalize((0.5,), (0.5,))


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    download: bool = True,
    split: str | None = None,
    normalize: str = "standard",
    frontend: FrontEnd | None = None,
) -> Dataset:
    """``split``: ``None`` is the dataset's official split; fsdd also takes ``speaker:NAME``.
    ``normalize`` (IDX image sets): ``standard`` divides by the training split's std after subtracting its
    mean; ``half`` maps pixels to [-1, 1] as the seed recipe's ``ToTensor`` + ``Normalize((0.5,), (0.5,))``
    does (``diptych bench --baseline`` trains the twins with the baseline's recipe this way).
    ``frontend`` (fsdd): the :class:`~diptych.data.audio.FrontEnd` a task reads its recordings with; None: the
    default one.
    A packed folder (``diptych data pack``) is read record by record (:mod:`diptych.data.packed`)."""
    check_data_dir(data_dir)
    if normalize not in NORMALIZATIONS or (normalize != "standard" and name not in IDX_SOURCES):
        raise DiptychError(
            f"normalization {normalize!r} for {name}: choose one of {', '.join(NORMALIZATIONS)} "
            f"(anything but standard is for the IDX image sets: {', '.join(IDX_SOURCES)})"
        )
    if frontend is not None and name != "fsdd":
        raise DiptychError(f"a front end is for the speech recordings (fsdd), not for {name}")
    if is_packed(data_dir) or unfinished_pack(data_dir):
        if frontend is not None and frontend != FSDD_FRONTEND:
            raise DiptychError(
                f"{data_dir} is a pack of features made with the default front end, and this task reads its "
                "recordings with its own; pass the folder of recordings instead"
            )
        if normalize != "standard":
            raise DiptychError(f"normalization {normalize!r}: a packed folder holds its own; pass the IDX files")
        return load_packed(data_dir, name, split or default_split(name))
    if name == "fsdd":
        return load_fsdd(data_dir, split, download, fe=frontend or FSDD_FRONTEND)
    if split not in (None, "official"):
        raise DiptychError(f"--split {split!r}: {name} has only its official split; --split is for fsdd")
    if name in IDX_SOURCES:
        return _load_idx(name, IDX_SOURCES[name], data_dir, download, normalize)
    if name == "mnist1d":
        return load_mnist1d()
    raise DiptychError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def load_packed(folder, name: str, split: str | None = None) -> Dataset:
    """A pack of ``name`` (training rows read lazily); one line if it is unfinished or of another dataset."""
    if not is_packed(folder):
        raise DataError(
            f"{folder} holds ArrayRecord shards but no {MANIFEST}: an unfinished or partly copied pack; "
            f"pack the dataset again (`diptych data pack {name} --out DIR`)"
        )
    data = open_pack(folder, name, split)
    check_packed(folder, data)
    return data


def check_packed(folder, data: Dataset) -> None:
    """A pack's manifest follows the format (checked on open) but could describe rows that its dataset's
    loader never gives (a mnist pack of 784-long rows: the same bytes, another shape); one line if so."""
    from diptych.data.audio_checks import check_features

    name = data.name
    want = {"mnist1d": (MNIST1D_LENGTH,), "fsdd": (FSDD_FRONTEND.n_mels, FSDD_FRONTEND.frames)}
    want |= dict.fromkeys(IDX_SOURCES, IMAGE_SHAPE)
    if name not in want:
        return
    got = (tuple(data.x_train.shape[1:]), tuple(data.y_train.shape[1:]))
    if got != (want[name], ()):
        raise DataError(
            f"{folder}: the manifest's fields make {got[0]} inputs and {got[1]} labels; {name} has {want[name]} "
            f"inputs and one label each: pack the dataset again (`diptych data pack {name}`)"
        )
    if name == "fsdd":  # the statistics audio augmentation draws from, saved into the trained weights
        check_features(data.features, f"{folder}/{MANIFEST}", want[name], fix="pack the dataset again")
    elif data.features is not None:
        raise DataError(f"{folder}/{MANIFEST}: info.features is set, {name} has none; pack the dataset again")


def _standardize(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x_train = x_train.astype(np.float32)
    x_test = x_test.astype(np.float32)
    mean, std = float(x_train.mean()), float(x_train.std())
    if not std > 0:  # constant inputs: refused by the loaders before this; never divide by zero
        raise DataError(f"every training input is {mean:g}: there is nothing to learn; check the data")
    return (x_train - mean) / std, (x_test - mean) / std


# ----------------------------------------------------------------------------- IDX sets


def candidate_dirs(name: str, data_dir: str | Path | None) -> list[Path]:
    dirs = []
    check_data_dir(data_dir)
    if data_dir is not None:
        dirs += [Path(data_dir), Path(data_dir) / name]
    if os.environ.get("DIPTYCH_DATA"):
        dirs.append(Path(os.environ["DIPTYCH_DATA"]) / name)
    dirs.append(cache_dir() / name)
    return dirs


def _find(stem: str, dirs: list[Path]) -> Path | None:
    for d in dirs:
        for candidate in (d / (stem + ".gz"), d / stem):
            if candidate.is_file():
                return candidate
    return None


def locate_idx_files(
    name: str, source: IdxSource, data_dir=None, download: bool = True, mirrors: tuple[str, ...] | None = None
) -> dict[str, Path]:
    """Find (or fetch) the four IDX files; gzipped ones are MD5-checked before use."""
    dirs = candidate_dirs(name, data_dir)
    found = {}
    for role, stem in source.files.items():
        path = _find(stem, dirs)
        if path is None:
            if not download or os.environ.get("DIPTYCH_OFFLINE"):
                raise DataError(
                    f"{name}: {stem}.gz not found in {', '.join(map(str, dirs))} and downloads are off "
                    f"(DIPTYCH_OFFLINE is set); put the four IDX files (.gz) in {cache_dir() / name} "
                    f"or pass --data-dir DIR"
                )
            try:
                path = fetch(stem + ".gz", source.md5[role], list(mirrors or source.mirrors), cache_dir() / name)
            except DataError as e:
                raise DataError(
                    f"{name}: {stem}.gz is not in {', '.join(map(str, dirs))} and {e}; "
                    f"put the four IDX files (.gz) in {cache_dir() / name} or pass --data-dir DIR"
                ) from None
        elif is_gzip(path) and (got := md5sum(path)) != source.md5[role]:  # by content: any name is checked
            raise DataError(
                f"{path}: MD5 {got} does not match the official {source.md5[role]}; "
                "the file is corrupt or not the official one: delete it and download it again"
            )
        found[role] = path
    return found


IMAGE_SHAPE = (28, 28)  # both IDX sets; the tasks' models are built for it
NUM_CLASSES = 10
_MAX_ITEMS = {"train": 60_000, "test": 10_000}  # the official files' sizes bound what is read


def _max_bytes(role: str) -> int:
    n = _MAX_ITEMS[role.split("_")[0]]
    return 16 + n * IMAGE_SHAPE[0] * IMAGE_SHAPE[1] if role.endswith("images") else 8 + n


def _load_idx(name: str, source: IdxSource, data_dir, download: bool, normalize: str = "standard") -> Dataset:
    paths = locate_idx_files(name, source, data_dir, download)
    arrays = {role: read_idx(p, _max_bytes(role)) for role, p in paths.items()}
    for split in ("train", "test"):
        xi, yi = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if xi.ndim != 3 or yi.ndim != 1 or len(xi) != len(yi) or len(xi) == 0:
            raise DataError(
                f"{name}: {split} images {xi.shape} and labels {yi.shape} do not match; "
                f"check {paths[f'{split}_images'].parent}"
            )
        if xi.shape[1:] != IMAGE_SHAPE:
            raise DataError(
                f"{paths[f'{split}_images']}: images are {xi.shape[1]}x{xi.shape[2]}, {name} models "
                f"take {IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]}; use the official {name} files"
            )
        if (bad := np.flatnonzero(yi >= NUM_CLASSES)).size:
            raise DataError(
                f"{paths[f'{split}_labels']}: label {int(yi[bad[0]])} at index {int(bad[0])} is outside "
                f"the {NUM_CLASSES} classes 0-{NUM_CLASSES - 1}; use the official {name} files"
            )
    if (lo := int(arrays["train_images"].min())) == int(arrays["train_images"].max()):
        # one value in every pixel: nothing to learn, and standardizing by a zero std would make the
        # inputs NaN, which training could only report as a diverged loss
        raise DataError(
            f"{paths['train_images']}: every pixel of all {len(arrays['train_images']):,} training images is {lo}"
            f"{' (all black)' if lo == 0 else ''}, so there is nothing to learn; use the official {name} files"
        )
    if normalize == "half":  # ToTensor (/255) then Normalize((0.5,), (0.5,)): [0, 255] -> [-1, 1]
        x_train, x_test = (arrays[k].astype(np.float32) / 127.5 - 1.0 for k in ("train_images", "test_images"))
    else:
        x_train, x_test = _standardize(arrays["train_images"], arrays["test_images"])
    return Dataset(
        name, x_train, arrays["train_labels"].astype(np.int32), x_test, arrays["test_labels"].astype(np.int32)
    )


# ----------------------------------------------------------------------------- MNIST-1D


MNIST1D_LENGTH = 40  # the generator's final_seq_length: the tasks' models take 40 values


def load_mnist1d() -> Dataset:
    """MNIST-1D generated offline by the ``mnist1d`` package (4000 train / 1000 test, length 40).

    Generation is deterministic (the package's seed 42) and takes a few seconds, so the
    result is cached in the user cache under a key of the generation arguments.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args(as_dict=True)
    args.pop("url", None)  # we never use the download path
    key = hashlib.sha1(json.dumps(args, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir() / "mnist1d" / f"mnist1d-{key}.npz"
    data = None
    if path.exists():
        try:
            with np.load(path) as f:
                data = {k: f[k] for k in ("x", "y", "x_test", "y_test")}
        except (OSError, ValueError, KeyError, EOFError):
            data = None  # a corrupt cache entry is regenerated below
    if data is None:
        made = make_dataset(get_dataset_args())
        data = {k: np.asarray(made[k]) for k in ("x", "y", "x_test", "y_test")}
        clean_stale_temps(path.parent)
        atomic_write(path, lambda tmp: np.savez(tmp, **data))
    x_train, x_test = _standardize(data["x"], data["x_test"])
    return Dataset("mnist1d", x_train, data["y"].astype(np.int32), x_test, data["y_test"].astype(np.int32))

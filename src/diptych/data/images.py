"""Your own images: a class-per-subfolder tree decoded with Pillow into a :class:`Dataset`.

Layouts (``PATH`` is ``--data-dir``):

* ``PATH/train/<class>/*.png|jpg|...`` and ``PATH/test/<class>/...``: the split is yours;
* ``PATH/<class>/...``: a ``val_fraction`` of each class is held out for testing, chosen by a seeded
  hash of the file's name, so the split is stable as files are added (a file never changes side).

Every image is converted to ``channels`` (1: grey, 3: RGB; transparency composited onto black,
palette images expanded, 16-bit images scaled to 8 bits' range) and resized to ``size`` x ``size``
(bilinear), then scaled to ``[0, 1]`` and standardized with the training split's mean and std.

Decoding has a budget: an image is refused, from its header and before any pixel is decoded, when it
would decode to more than :func:`max_image_pixels` pixels (``$DIPTYCH_MAX_IMAGE_PIXELS``, default
4096 x 4096; Pillow's own decompression-bomb limit, ``PIL.Image.MAX_IMAGE_PIXELS``, applies too). A JPEG
much larger than ``size`` decodes at 1/2 to 1/8 scale (``Image.draft``), and any image at least four
times ``size`` is box-reduced right after decoding, so the conversions work on a small copy.
Decoded arrays are cached under :func:`~diptych.data.base.cache_dir`, keyed by a hash of every file's
name and bytes and the size and channels, so a changed image is never served stale.

    >>> class_of("a/cat/1.png"), split_side("cat/1.png", 0.0, 0)
    ('cat', 'train')
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from pathlib import Path

import numpy as np

from diptych.data.base import Dataset, cache_dir
from diptych.errors import DataError, DiptychError
from diptych.fsio import atomic_write

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")
REDUCIBLE = ("L", "LA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr")  # Image.reduce averages these modes' bands
DEFAULT_MAX_PIXELS = 4096 * 4096  # 64 MiB as 8-bit RGBA: far more than a classifier's input needs
LIMIT_VAR = "DIPTYCH_MAX_IMAGE_PIXELS"


def max_image_pixels() -> int:
    """The most pixels an image may decode to: ``$DIPTYCH_MAX_IMAGE_PIXELS``, or 4096 x 4096."""
    raw = os.environ.get(LIMIT_VAR, "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if limit < 1:
        raise DiptychError(
            f"{LIMIT_VAR}={raw!r}: expected a whole number of pixels, e.g. {DEFAULT_MAX_PIXELS} "
            f"(4096x4096, the default)"
        )
    return limit


def _too_large(path: Path, pixels: int, limit: int, shape: str = "") -> DiptychError:
    """The one line for an image over the budget: diptych's limit, or Pillow's decompression-bomb limit
    (``PIL.Image.MAX_IMAGE_PIXELS``, checked when Pillow reads the header), which ours cannot raise."""
    from PIL import Image

    what = f"image {path} is {shape}{pixels:,} pixels"
    pillow = Image.MAX_IMAGE_PIXELS
    if pillow is not None and pixels > pillow:
        beyond = "" if pixels <= limit else f"the limit of {limit:,} ({LIMIT_VAR}) and "
        return DiptychError(f"{what}, above {beyond}Pillow's decompression-bomb limit of {pillow:,}; shrink it")
    return DiptychError(
        f"{what}, above the limit of {limit:,} ({LIMIT_VAR}, default {DEFAULT_MAX_PIXELS:,} = 4096x4096); "
        f"shrink it (a classifier needs far fewer pixels), or raise {LIMIT_VAR}"
    )


def _shrink(img, size: int, box: tuple):
    """``img`` box-reduced by whole factors while it stays at least twice ``size`` (Pillow's reducing gap 2,
    as ``Image.resize(reducing_gap=2)`` does it), and ``box``, the picture's extent, in the reduced pixels."""
    fx, fy = max(1, int((box[2] - box[0]) / size / 2)), max(1, int((box[3] - box[1]) / size / 2))
    if (fx == 1 and fy == 1) or img.mode not in REDUCIBLE:
        return img, box
    return img.reduce((fx, fy)), (box[0] / fx, box[1] / fy, box[2] / fx, box[3] / fy)


def class_of(path: str | Path) -> str:
    return Path(path).parent.name


def split_side(name: str, val_fraction: float, seed: int) -> str:
    """``"test"`` for about ``val_fraction`` of names, by a seeded hash of ``name`` (``class/file``)."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2**64 < val_fraction else "train"


def decode(path: Path, size: int, channels: int, max_pixels: int | None = None) -> np.ndarray:
    """One image as float32 ``(size, size)`` (1 channel) or ``(channels, size, size)``, values in ``[0, 1]``;
    refused before decoding when it would decode to more than ``max_pixels`` (:func:`max_image_pixels`)."""
    from PIL import Image, UnidentifiedImageError

    limit = max_image_pixels() if max_pixels is None else max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # Pillow's limit: refused, not warned
            with Image.open(path) as img:  # reads the header only
                drafted = img.draft(None, (2 * size, 2 * size))  # a JPEG: decoded at 1/2..1/8 scale; else None
                w, h = img.size
                box = drafted[1] if drafted else (0, 0, w, h)  # the picture, in the pixels it decodes to
                if w * h > limit:
                    raise _too_large(path, w * h, limit, f"{w}x{h} = ")
                img.load()  # decode now: a truncated file fails here, not later
                if img.mode in SIXTEEN_BIT:  # 16-bit grey: scale to 8 bits' range before converting
                    arr = np.asarray(img, np.float32)
                    top = float(arr.max(initial=0.0))
                    if top > 255:
                        arr *= 255 / top
                    img = Image.fromarray(arr.astype(np.uint8))
                    del arr
                if img.mode in ("P", "PA"):
                    img = img.convert("RGBA")  # palette (and its transparency) expanded
                img, box = _shrink(img, size, box)
                if "A" in img.getbands():  # transparency: composite onto black
                    rgba = img.convert("RGBA")
                    img = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
                img = img.convert("L" if channels == 1 else "RGB").resize((size, size), Image.Resampling.BILINEAR, box)
                arr = np.asarray(img, np.float32) / 255.0  # (H, W) or (H, W, 3)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        found = re.search(r"\((\d+) pixels\)", str(e))  # Pillow's message: "Image size (N pixels) exceeds ..."
        raise _too_large(path, int(found.group(1)) if found else 0, limit) from None
    except MemoryError:
        raise DiptychError(
            f"not enough memory to decode image {path}; shrink it, or lower {LIMIT_VAR} (now {limit:,} pixels)"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as e:
        raise DiptychError(f"cannot read image {path}: {' '.join(str(e).split())}; fix or remove the file") from None
    return arr if channels == 1 else arr.transpose(2, 0, 1)  # (C, H, W)


def _images(folder: Path) -> dict[str, list[Path]]:
    """``{class: [image files]}`` for every subfolder of ``folder``, sorted."""
    classes = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in sub.iterdir() if f.suffix.lower() in EXTENSIONS and f.is_file())
        if not files:
            raise DiptychError(f"class folder {sub} has no images ({', '.join(EXTENSIONS)}); add some or remove it")
        classes[sub.name] = files
    return classes


def find_splits(root: Path, val_fraction: float, seed: int) -> tuple[list[str], dict[str, list[tuple[Path, int]]]]:
    """Class names and ``{"train": [(file, label)], "test": [...]}``, with every layout check made."""
    if not root.is_dir():
        raise DiptychError(f"--data-dir {root} is not a folder; pass a folder with one subfolder per class")
    if (root / "train").is_dir():
        if not (root / "test").is_dir():
            raise DiptychError(
                f"{root} has train/ but no test/; add test/<class>/ folders, or put the class "
                f"folders directly in {root} and use --val-fraction"
            )
        train, test = _images(root / "train"), _images(root / "test")
        unseen = sorted(set(test) - set(train))
        if unseen:
            raise DiptychError(
                f"test class {unseen[0]!r} has no training images ({root / 'train' / unseen[0]} "
                f"is missing); add them or remove {root / 'test' / unseen[0]}"
            )
        names = sorted(train)
    else:
        every = _images(root)
        names = sorted(every)
        train = {c: [f for f in every[c] if split_side(f"{c}/{f.name}", val_fraction, seed) == "train"] for c in names}
        test = {c: [f for f in every[c] if split_side(f"{c}/{f.name}", val_fraction, seed) == "test"] for c in names}
        starved = [c for c in names if not train[c]]
        if starved:
            raise DiptychError(
                f"class {starved[0]!r} has no training images after holding out --val-fraction "
                f"{val_fraction}; add images or lower --val-fraction"
            )
    if not names:
        raise DiptychError(
            f"no class folders with images in {root}; expected {root}/<class>/*.png (or train/ "
            f"and test/ folders of classes)"
        )
    if len(names) < 2:
        raise DiptychError(f"only one class ({names[0]!r}) in {root}; a classifier needs two or more class folders")
    if not any(test.values()):
        raise DiptychError(f"no test images in {root}; add test/<class>/ images or raise --val-fraction")
    label = {c: i for i, c in enumerate(names)}
    return names, {
        side: [(f, label[c]) for c in sorted(d) for f in d[c]] for side, d in (("train", train), ("test", test))
    }


def _key(files: list[Path], size: int, channels: int) -> str:
    """A hash of every file's name and bytes, and of the conversion: the cache entry's name."""
    h = hashlib.sha256(f"v2 {size} {channels}".encode())  # v2: JPEG draft, reduce
    for f in files:
        h.update(f"{f.parent.name}/{f.name}\0".encode())
        try:
            with open(f, "rb") as fh:  # in chunks: a huge file is hashed, not held in memory
                h.update(hashlib.file_digest(fh, "sha256").digest())
        except OSError as e:
            raise DiptychError(f"cannot read image {f}: {e.strerror or e}; fix its permissions or remove it") from None
    return h.hexdigest()[:32]


def decode_all(files: list[Path], size: int, channels: int, progress: bool = True) -> np.ndarray:
    """``(N, [C,] size, size)`` float32 in ``[0, 1]``, from the cache when the same bytes were decoded before."""
    from rich.progress import track

    from diptych.progress import console

    path = cache_dir() / "images" / f"{_key(files, size, channels)}.npy"
    if path.exists():
        try:
            return np.load(path)
        except (OSError, ValueError):
            pass  # a corrupt cache entry is decoded again below
    it = track(files, description="images: decoding", console=console, transient=True) if progress else files
    arr = np.stack([decode(f, size, channels) for f in it])
    try:
        atomic_write(path, lambda tmp: np.save(tmp, arr))  # a full disk: one line, no half-written entry
    except DiptychError as e:
        raise DiptychError(f"{e}, or set DIPTYCH_CACHE to a folder with room (the decoded images' cache)") from None
    return arr


def check_packed_images(root, data: Dataset) -> dict:
    """The front end of a pack of images (size, channels), checked against its rows and class names; one
    line if the manifest's ``info`` is not what :func:`load_image_folder` writes (it sizes the model)."""
    features = data.features if isinstance(data.features, dict) else {}
    fe = features.get("frontend") if isinstance(features.get("frontend"), dict) else {}
    size, channels = fe.get("size"), fe.get("channels")
    stats = [features.get(k) for k in ("mean", "std")]
    ok = (
        fe.get("kind") == "image"
        and type(size) is int
        and 8 <= size <= 512
        and channels in (1, 3)
        and type(channels) is int
        and all(type(v) in (int, float) and abs(v) <= 1e30 for v in stats)  # NaN fails too; finite in float32
        and stats[1] > 0
        and data.classes is not None
    )
    side = (size, size) if channels == 1 else (channels, size, size)
    if not ok or (tuple(data.x_train.shape[1:]), tuple(data.y_train.shape[1:])) != (side, ()):
        raise DataError(
            f"{root}/manifest.json: info.features and info.classes are not those of a pack of images "
            f"(an image front end, statistics, class names, and rows of that size); pack the folder again"
        )
    return fe


def load_image_folder(root: str | Path, size: int, channels: int, val_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """The folder as a standardized :class:`Dataset` with ``classes`` and the statistics in ``features``
    (or a pack of one, written by ``diptych data pack folder``, read record by record)."""
    from diptych.data.packed import is_packed, open_pack

    if is_packed(root):
        data = open_pack(root, "folder")
        fe = check_packed_images(root, data)
        if (fe["size"], fe["channels"]) != (size, channels):
            raise DataError(
                f"{root} was packed at {fe['size']}px with {fe['channels']} channel(s), the run asks for "
                f"{size}px with {channels}; pass --image-size {fe['size']} --channels {fe['channels']} or pack again"
            )
        return data
    names, splits = find_splits(Path(root), val_fraction, seed)
    files = [f for side in ("train", "test") for f, _ in splits[side]]
    arr = decode_all(files, size, channels)
    n = len(splits["train"])
    mean, std = float(arr[:n].mean()), float(arr[:n].std()) or 1.0
    arr = (arr - mean) / std
    labels = np.array([y for side in ("train", "test") for _, y in splits[side]], np.int32)
    features = {"frontend": {"kind": "image", "size": size, "channels": channels}, "mean": mean, "std": std}
    return Dataset(
        "folder", arr[:n], labels[:n], arr[n:], labels[n:], num_classes=len(names), features=features, classes=names
    )

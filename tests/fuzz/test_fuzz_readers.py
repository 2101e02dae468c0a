"""Fuzz every reader of untrusted files with mutated real files and generated edge cases: each input
loads (and satisfies the reader's invariants) or is refused with one line, within a memory bound.

Seeds are real: the MNIST test labels and the first images of the test set (IDX, gzipped and raw), a
recording of the Free Spoken Digit Dataset in 16-bit PCM, 32-bit float, WAVE_FORMAT_EXTENSIBLE and
FLAC, images drawn and saved by Pillow (PNG in five modes, JPEG, GIF, BMP, TIFF), weights/checkpoints/
msgpack files written by diptych itself, and the manifest of a pack written by diptych's writer. PNG
headers are also generated field by field."""

from __future__ import annotations

import copy
import gzip
import io
import json
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fuzzing import fuzz_settings, json_values, loads_or_refuses, mutated, mutated_json, outcome_counts, report_outcomes  # noqa: F401
from hypothesis import given
from hypothesis import strategies as st

from diptych import checkpoint
from diptych.data import load_dataset
from diptych.data.audio import FSDD_FRONTEND, read_wav, wav_features
from diptych.data.audio_checks import check_features
from diptych.data.datasets import IDX_SOURCES
from diptych.data.idx import read_idx, write_idx
from diptych.data.images import decode
from diptych.data.text import load_text
from diptych.overrides import spec_to_dict
from diptych.tasks import TASKS
from diptych.weights import save_weights
from image_helpers import MODES, draw, ihdr, png, png_chunk, save

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")  # numpy overflow/invalid: silently wrong values
TASK = "mnist1d-mlp"
SHAPES = TASKS[TASK].model.param_shapes()


def _data_root() -> Path | None:
    root = os.environ.get("DIPTYCH_DATA")
    return Path(root) if root and (Path(root) / "mnist").is_dir() and (Path(root) / "fsdd").is_dir() else None


def _need_data():
    if _data_root() is None:
        pytest.skip(
            "the fuzz seeds are real files: set DIPTYCH_DATA to a folder with mnist/ and fsdd/ in it "
            "(CI uses ../shared/data)"
        )
    return _data_root()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


# ----------------------------------------------------------------------------- IDX


@pytest.fixture(scope="module")
def idx_seeds():
    root = _need_data() / "mnist"
    labels = gzip.decompress((root / "t10k-labels-idx1-ubyte.gz").read_bytes())[: 8 + 200]
    labels = labels[:4] + (200).to_bytes(4, "big") + labels[8:]
    images = gzip.decompress((root / "t10k-images-idx3-ubyte.gz").read_bytes())[: 16 + 4 * 784]
    images = images[:4] + (4).to_bytes(4, "big") + images[8:]
    return [labels, images, gzip.compress(labels), gzip.compress(images)]


@fuzz_settings(200)
@given(data=st.data())
def test_idx_reader(idx_seeds, folder, data):
    raw = data.draw(mutated(idx_seeds, byteorder="big", hot=20) | st.binary(max_size=64))
    (folder / "f-idx").write_bytes(raw)
    got = loads_or_refuses("idx", lambda: read_idx(folder / "f-idx", max_bytes=200_000))
    if got is not None:
        assert got.dtype == np.uint8 and 1 <= got.ndim <= 4 and got.nbytes <= 200_000


@fuzz_settings(75)
@given(data=st.data())
def test_idx_dataset_loader(idx_seeds, folder, data):
    """A damaged label or image file among four good ones: the loader's checks against the task."""
    d = folder / "set"
    d.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for role, stem in IDX_SOURCES["mnist"].files.items():
        n = 6 if "train" in role else 4
        write_idx(d / stem, rng.integers(0, 256, (n, 28, 28)) if "images" in role else rng.integers(0, 10, n))
    role = data.draw(st.sampled_from(list(IDX_SOURCES["mnist"].files)))
    stem = IDX_SOURCES["mnist"].files[role]
    (d / stem).write_bytes(data.draw(mutated([(d / stem).read_bytes()], byteorder="big", hot=20)))
    got = loads_or_refuses("idx-dataset", lambda: load_dataset("mnist", d))
    if got is not None:
        assert got.x_train.shape[1:] == (28, 28) and got.y_train.max() < 10 and np.isfinite(got.x_train).all()


# ----------------------------------------------------------------------------- WAV / FLAC


@pytest.fixture(scope="module")
def wav_seeds(tmp_path_factory):
    import scipy.signal  # noqa: F401  imported here, not under tracemalloc (which makes the import take 10 s)

    src = _need_data() / "fsdd" / "recordings" / "7_jackson_32.wav"
    x, rate = sf.read(src, dtype="int16")
    x = x[:1500]  # a short cut keeps each example fast; the headers are what is fuzzed
    out = tmp_path_factory.mktemp("wavseeds")
    seeds = []
    for name, fmt, subtype, data in (
        ("pcm16", "WAV", "PCM_16", x),
        ("float", "WAV", "FLOAT", x / 2**15),
        ("ext", "WAVEX", "PCM_16", x),
        ("flac", "FLAC", "PCM_16", x),
        ("stereo24", "WAV", "PCM_24", np.stack([x, x], 1)),
    ):
        sf.write(out / name, data, rate, format=fmt, subtype=subtype)
        seeds.append((out / name).read_bytes())
    return seeds


@fuzz_settings(200)
@given(data=st.data())
def test_wav_reader(wav_seeds, folder, data):
    raw = data.draw(mutated(wav_seeds, byteorder="little", hot=80) | st.binary(max_size=96))
    (folder / "f.wav").write_bytes(raw)
    path = folder / "f.wav"
    got = loads_or_refuses("wav", lambda: (read_wav(path, 8000), wav_features(path, FSDD_FRONTEND)))
    if got is not None:
        x, image = got
        assert x.dtype == np.float32 and x.ndim == 1 and len(x) > 0 and np.isfinite(x).all()
        assert image.shape == (FSDD_FRONTEND.n_mels, FSDD_FRONTEND.frames) and np.isfinite(image).all()


def _wav(tag, channels, rate, bits, block, data_size, data_len):
    block = channels * bits // 8 % 2**16 if block is None else block  # None: the consistent block size
    fmt = struct.pack("<HHIIHH", tag, channels, rate, (rate * block) % 2**32, block, bits)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_len)
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", data_size)
        + bytes(data_len)
    )


@fuzz_settings(200)  # few generated headers are valid: at least 200 cases, so some load
@given(
    tag=st.sampled_from([1, 3, 2, 0xFFFE, 0]),
    channels=st.sampled_from([0, 1, 2, 3, 33, 65535]),
    rate=st.sampled_from([0, 1, 999, 1000, 1081, 8000, 44100, 44101, 384000, 384001, 2**31 - 1, 2**32 - 1]),
    bits=st.sampled_from([0, 8, 12, 16, 24, 32, 64]),
    block=st.none() | st.integers(0, 16),
    data_size=st.sampled_from([0, 1, 2, 3, 4, 100, 2**31, 2**32 - 1]),
    data_len=st.sampled_from([0, 1, 4, 100]),
)
def test_wav_generated_headers(folder, tag, channels, rate, bits, block, data_size, data_len):
    (folder / "g.wav").write_bytes(_wav(tag, channels, rate, bits, block, data_size, data_len))
    got = loads_or_refuses("wav-generated", lambda: read_wav(folder / "g.wav", 8000))
    if got is not None:
        assert got.dtype == np.float32 and np.isfinite(got).all()


# ----------------------------------------------------------------------------- images (Pillow)


def _image_ok(got, channels):
    want = (8, 8) if channels == 1 else (channels, 8, 8)
    assert got.shape == want and got.dtype == np.float32 and np.isfinite(got).all()
    assert got.min() >= 0 and got.max() <= 1


@pytest.fixture(scope="module")
def image_seeds(tmp_path_factory):
    out = tmp_path_factory.mktemp("imgseeds")
    img = draw("circle", np.random.default_rng(0), 20)
    seeds = []
    for i, mode in enumerate(MODES):
        save(img, out / f"{i}.png", mode)
        seeds.append((out / f"{i}.png").read_bytes())
    for fmt, mode in (("JPEG", "RGB"), ("GIF", "P"), ("BMP", "RGB"), ("TIFF", "L")):
        buf = io.BytesIO()
        img.convert(mode).save(buf, format=fmt)
        seeds.append(buf.getvalue())
    return seeds


# The fuzzed images decode under a pixel budget of 2048 x 2048, a quarter of the default: at the default
# (4096 x 4096) the long profile found a mutated image that took exactly the 256 MiB memory bound (16 bytes
# a pixel at the budget's edge), which is the budget working as sized, not a bomb getting through.
FUZZ_PIXELS = 2048 * 2048


@fuzz_settings(150)
@given(data=st.data())
def test_image_reader(image_seeds, folder, data):
    raw = data.draw(mutated(image_seeds, byteorder="big", hot=40) | st.binary(max_size=64))
    channels = data.draw(st.sampled_from([1, 3]))
    (folder / "f.img").write_bytes(raw)
    got = loads_or_refuses("image", lambda: decode(folder / "f.img", 8, channels, FUZZ_PIXELS), rss=True)
    if got is not None:
        _image_ok(got, channels)


CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # PNG colour type -> samples per pixel
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _raw_size(width, height, bit_depth, colour, interlace) -> int:
    """The bytes of the filtered scanlines a header's image needs (each row: a filter byte, then pixels)."""
    bits = CHANNELS.get(colour, 1) * max(bit_depth, 1)
    passes = ADAM7 if interlace == 1 else ((0, 0, 1, 1),)
    size = 0
    for x0, y0, dx, dy in passes:
        pw, ph = math.ceil(max(width - x0, 0) / dx), math.ceil(max(height - y0, 0) / dy)
        size += ph * (1 + math.ceil(pw * bits / 8)) if pw and ph else 0
    return size


VALID_PNG = [(0, 1), (0, 2), (0, 4), (0, 8), (0, 16), (2, 8), (2, 16), (3, 1), (3, 2), (3, 4), (3, 8), (4, 8)]
VALID_PNG += [(4, 16), (6, 8), (6, 16)]  # (colour type, bit depth): every pair the PNG standard allows
HOSTILE_PNG = {  # a field's values outside what a small valid image has
    "width": st.sampled_from([0, 4096, 4097, 9000, 20000, 2**16, 2**31 - 1, 2**31, 2**32 - 1]),
    "height": st.sampled_from([0, 4096, 4097, 9000, 20000, 2**16, 2**31 - 1, 2**32 - 1]),
    "bit_depth": st.sampled_from([0, 3, 5, 32, 255]),
    "colour": st.sampled_from([1, 5, 7, 255]),
    "interlace": st.sampled_from([2, 255]),
    "idat": st.sampled_from(["noise", "truncated", "empty", "none", "garbage"]),
    "palette": st.sampled_from([None, 0, 300]),  # colour type 3: missing, empty, too long
    "header_crc_ok": st.just(False),
}


@st.composite
def png_headers(draw):
    """A small valid PNG's fields, then 0-3 of them given hostile values."""
    colour, bit_depth = draw(st.sampled_from(VALID_PNG))
    fields = {
        "width": draw(st.integers(1, 40)),
        "height": draw(st.integers(1, 40)),
        "bit_depth": bit_depth,
        "colour": colour,
        "interlace": draw(st.sampled_from([0, 1])),
        "idat": draw(st.sampled_from(["zeros", "split"])),
        "palette": draw(st.sampled_from([256, 1, 16])),
        "header_crc_ok": True,
    }
    for name in draw(st.lists(st.sampled_from(sorted(HOSTILE_PNG)), max_size=3, unique=True)):
        fields[name] = draw(HOSTILE_PNG[name])
    return fields


@fuzz_settings(150)
@given(fields=png_headers(), channels=st.sampled_from([1, 3]))
def test_png_generated_headers(folder, fields, channels):
    """Every IHDR field, a palette of any length, scanlines that fit, are noise, stop short or are missing:
    decoded or refused in one line, and never more than the memory bound however large the header claims."""
    width, height, bit_depth, colour, interlace, idat = (
        fields[k] for k in ("width", "height", "bit_depth", "colour", "interlace", "idat")
    )
    n = _raw_size(width, height, bit_depth, colour, interlace)
    if idat in ("zeros", "split", "noise") and n <= 2**22:
        raw = bytes(n) if idat != "noise" else np.random.default_rng(n).integers(0, 256, n, np.uint8).tobytes()
        body = zlib.compress(raw)
    elif idat in ("zeros", "split", "noise", "truncated"):  # too large to write out, or cut on purpose
        full = zlib.compress(bytes(min(n, 2**16)))
        body = full if idat != "truncated" else full[: len(full) // 2]
    else:
        body = b"\x78\x9c\xff\x00garbage" if idat == "garbage" else b""
    palette = fields["palette"]
    chunks = [png_chunk(b"PLTE", bytes(3 * palette))] if palette is not None and colour == 3 else []
    if idat == "split":
        chunks += [png_chunk(b"IDAT", body[: len(body) // 2]), png_chunk(b"IDAT", body[len(body) // 2 :])]
    elif idat != "none":
        chunks.append(png_chunk(b"IDAT", body))
    header = ihdr(width, height, bit_depth, colour, interlace)
    path = folder / "g.png"
    path.write_bytes(png(header, *chunks, header_crc_ok=fields["header_crc_ok"]))
    got = loads_or_refuses("png-generated", lambda: decode(path, 8, channels, FUZZ_PIXELS), rss=True)
    if got is not None:
        _image_ok(got, channels)


# ----------------------------------------------------------------------------- safetensors weights


def _params(seed=0):
    rng = np.random.default_rng(seed)
    return {k: rng.normal(0, 0.1, s).astype(np.float32) for k, s in SHAPES.items()}


def _split(raw: bytes) -> tuple[dict, bytes]:
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def _join(header, body: bytes, length_delta: int = 0) -> bytes:
    h = json.dumps(header).encode()
    return (len(h) + length_delta).to_bytes(8, "little", signed=False) + h + body


@st.composite
def mutated_safetensors(draw, seed: bytes):
    """A header mutated as JSON (dtype, shape, offsets, metadata values), or the bytes mutated."""
    if draw(st.booleans()):
        return draw(mutated([seed], hot=200))
    header, body = _split(seed)
    meta = {k: json.loads(v) for k, v in header.get("__metadata__", {}).items()}
    if draw(st.booleans()) and meta:
        meta = draw(mutated_json(meta))
        header["__metadata__"] = {str(k): json.dumps(v) for k, v in meta.items()} if isinstance(meta, dict) else meta
    else:
        header = draw(mutated_json(header))
    delta = draw(st.sampled_from([0, 0, 0, 1, -1, 2**40]))
    return _join(header, body, delta)


@pytest.fixture(scope="module")
def weights_seed(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "w.safetensors"
    save_weights(_params(), path, task=TASK, framework="torch", model=spec_to_dict(TASKS[TASK].model))
    return path.read_bytes()


@fuzz_settings(150)
@given(data=st.data())
def test_safetensors_weights(weights_seed, folder, data):
    from diptych.formats import read_any

    (folder / "w.safetensors").write_bytes(data.draw(mutated_safetensors(weights_seed)))
    got = loads_or_refuses("safetensors", lambda: read_any(folder / "w.safetensors"))
    if got is not None:
        params, spec, _ = got
        assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in params.values())
        assert {k: v.shape for k, v in params.items()} == spec.param_shapes()


@st.composite
def reoffset_safetensors(draw, seed: bytes):
    """The seed with its tensors' byte ranges moved, everything else intact: the data laid out in another
    order (a valid file), or one range shifted within the section, pointed at another tensor's bytes, or the
    section given a gap or a tail (each invalid: a tensor read from bytes that are not its own)."""
    header, body = _split(seed)
    names = sorted(k for k in header if k != "__metadata__")
    ranges = {k: header[k]["data_offsets"] for k in names}
    kind = draw(st.sampled_from(["reorder", "reorder", "shift", "alias", "gap", "tail"]))
    if kind == "reorder":
        at, parts = 0, []
        for k in draw(st.permutations(names)):
            b, e = ranges[k]
            parts.append(body[b:e])
            header[k]["data_offsets"] = [at, at + e - b]
            at += e - b
        body = b"".join(parts)
    elif kind == "shift":
        k = draw(st.sampled_from(names))
        b, e = ranges[k]
        d = draw(st.integers(-b, len(body) - e).filter(bool))  # stays inside the data section
        header[k]["data_offsets"] = [b + d, e + d]
    elif kind == "alias":
        k = draw(st.sampled_from(names))
        size = ranges[k][1] - ranges[k][0]
        same = [o for o in names if o != k and ranges[o][1] - ranges[o][0] == size]  # shapes still match
        header[k]["data_offsets"] = list(ranges[draw(st.sampled_from(same or [o for o in names if o != k]))])
    elif kind == "gap":
        k, g = draw(st.sampled_from(names)), draw(st.integers(1, 64))
        at = ranges[k][0]
        for o in names:
            if ranges[o][0] >= at:
                header[o]["data_offsets"] = [ranges[o][0] + g, ranges[o][1] + g]
        body = body[:at] + bytes(g) + body[at:]
    else:
        body += bytes(draw(st.integers(1, 64)))
    return _join(header, body)


def _tiles(raw: bytes) -> bool:
    """Do the header's byte ranges tile the data section exactly (sorted, each where the last ended)?"""
    header, body = _split(raw)
    at = 0
    for b, e in sorted(v["data_offsets"] for k, v in header.items() if k != "__metadata__"):
        if b != at:
            return False
        at = e
    return at == len(body)


@fuzz_settings(150)
@given(data=st.data())
def test_safetensors_byte_ranges(weights_seed, folder, data):
    """Only files whose tensors tile the data section load, and then with every tensor's own values."""
    from diptych.formats import read_any

    raw = data.draw(reoffset_safetensors(weights_seed))
    (folder / "o.safetensors").write_bytes(raw)
    got = loads_or_refuses("safetensors-offsets", lambda: read_any(folder / "o.safetensors"))
    if got is not None:
        params, _, _ = got
        want = _params()
        assert _tiles(raw) and all(np.array_equal(params[k], want[k]) for k in want)


# ----------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def checkpoint_seed(tmp_path_factory):
    p = _params()
    opt = {"step": np.asarray(40, np.int64)} | {
        f"{m}.{k}": np.full_like(v, 1e-3) for m in ("exp_avg", "exp_avg_sq") for k, v in p.items()
    }
    config = {
        "epochs": 3,
        "batch_size": 100,
        "lr": 1e-3,
        "optimizer": "adam",
        "schedule": "constant",
        "warmup_fraction": 0.0,
        "seed": 0,
        "compile": False,
        "precision": "fp32",
        "split": None,
    }
    meta = {
        "task": TASK,
        "framework": "torch",
        "epoch": 1,
        "config": config,
        "epochs": [{"epoch": 1, "train_loss": 1.2, "test_accuracy": 0.5, "wall_seconds": 1.5}],
        "wall_seconds": 1.5,
        "compile_seconds": 0.2,
        "steady_samples": 3900,
        "steady_seconds": 1.0,
        "loss_curve": [[20, 1.5], [40, 1.2]],
    }
    path = tmp_path_factory.mktemp("c") / "c.safetensors"
    checkpoint.save(path, p, opt, **meta)
    return path.read_bytes()


@fuzz_settings(150)
@given(data=st.data())
def test_checkpoint(checkpoint_seed, folder, data):
    (folder / "c.safetensors").write_bytes(data.draw(mutated_safetensors(checkpoint_seed)))
    got = loads_or_refuses("checkpoint", lambda: checkpoint.load(folder / "c.safetensors", TASK))
    if got is not None:
        params, opt, meta = got
        assert set(params) == set(SHAPES) and isinstance(meta["epoch"], int) and "step" in opt


# ----------------------------------------------------------------------------- audio feature metadata


GOOD_FEATURES = {
    "frontend": dict(FSDD_FRONTEND.__dict__),
    "split": "official",
    "mean": [-10.0] * 32,
    "std": [2.0] * 32,
    "silence": [-1.0] * 32,
    "noise_shape": [1.0] * 32,
    "noise_bins": [4.0] * 32,
    "floor": [1e-6] * 32,
}


@fuzz_settings(150)
@given(features=mutated_json(GOOD_FEATURES) | json_values)
def test_feature_metadata(features):
    shape = TASKS["fsdd-cnn"].model.input_shape()
    got = loads_or_refuses("features", lambda: check_features(copy.deepcopy(features), "w", shape))
    if got is not None:
        fe = got["frontend"]
        assert (fe.n_mels, fe.frames) == shape and (got["std"] > 0).all() and fe.n_fft >= 16


# ----------------------------------------------------------------------------- text corpora


@fuzz_settings(75)
@given(
    raw=st.binary(max_size=200)
    | st.text(max_size=200).map(str.encode)
    | st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x4E00 + 5000), min_size=4090, max_size=4200).map(
        str.encode
    )
)
def test_text_corpus(folder, raw):
    (folder / "t.txt").write_bytes(raw)
    got = loads_or_refuses("text", lambda: load_text(folder / "t.txt"))
    if got is not None:
        assert 0 < len(got.vocab) <= 4096 and got.train.max(initial=0) < len(got.vocab)


# ----------------------------------------------------------------------------- Flax msgpack


@pytest.fixture(scope="module")
def msgpack_seed(tmp_path_factory):
    import flax.serialization  # noqa: F401  (see wav_seeds)

    from diptych.backends import load_backend

    path = tmp_path_factory.mktemp("m") / "w.msgpack"
    load_backend("jax").weights.save_native(_params(), path, TASKS[TASK].model)
    return path.read_bytes()


@fuzz_settings(60)
@given(data=st.data())
def test_msgpack(msgpack_seed, folder, data):
    from diptych.formats import read_any

    (folder / "w.msgpack").write_bytes(data.draw(mutated([msgpack_seed], hot=400) | st.binary(max_size=64)))
    got = loads_or_refuses("msgpack", lambda: read_any(folder / "w.msgpack"))
    if got is not None:
        params, spec, _ = got
        assert {k: v.shape for k, v in params.items()} == spec.param_shapes()


# ----------------------------------------------------------------------------- pack manifests


@pytest.fixture(scope="module")
def pack_seed(tmp_path_factory):
    """A tiny pack written by the real writer (MNIST-1D-shaped rows, 3 training shards), and hostile
    neighbours: a byte-identical copy of a shard outside the pack (a manifest pointing there passes every
    size, hash and count check) and symlinks in the pack: one leading out to it, one to a shard inside,
    one to itself."""
    from diptych.data import Dataset
    from diptych.data.packed import shard_name
    from diptych.data.packing import pack_dataset

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((12, 40)).astype(np.float32), rng.integers(0, 10, 12).astype(np.int32)
    data = Dataset("mnist1d", x[:9], y[:9], x[9:], y[9:])
    root = tmp_path_factory.mktemp("packs")
    pack_dataset(data, root / "pack", shards=3, progress=False)
    first = shard_name("train", 0, 3)
    (root / "outside.array_record").write_bytes((root / "pack" / first).read_bytes())
    os.symlink(root / "outside.array_record", root / "pack" / "escape.array_record")
    os.symlink(first, root / "pack" / "alias.array_record")
    os.symlink("loop.array_record", root / "pack" / "loop.array_record")  # a link to itself
    return root / "pack", json.loads((root / "pack" / "manifest.json").read_text()), data


def _paths(value, at=()):
    """Every place in a JSON value, as a tuple of keys and indices (the root is ``()``)."""
    yield at
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        yield from _paths(v, (*at, k))


def _set(value, at, new):
    """A copy of ``value`` with the node at ``at`` replaced by ``new`` (or deleted, for ``_DROP``)."""
    value = copy.deepcopy(value)
    *parent, last = at
    node = value
    for k in parent:
        node = node[k]
    if new is _DROP:
        del node[last]
    else:
        node[last] = new
    return value


_DROP = object()
_DEEP = "\x00deep"
HOSTILE = [None, True, 0, -1, 1, 2, 3, 4, 2**31, 2**63, 2**64, 10**30, 1.5, 3.0, float("nan"), float("inf")]
HOSTILE += ["", "3", "float32", "int32", [], [40], [2, 20], [-40], [0], [2**40], {}, {"a": 1}]
FILES = ["../outside.array_record", "escape.array_record", "alias.array_record", "sub/x.array_record", "..", "."]
FILES += ["", "/", "x\0.array_record", "manifest.json", "a\\b.array_record", "no-such.array_record", "x" * 300]
FILES += ["loop.array_record", "test-00000-of-00001.array_record", "train-00001-of-00003.array_record", 7, None, ["a"]]


@st.composite
def mutated_manifest(draw, seed: dict, outside: str):
    """The text of ``seed`` (a real manifest) mutated structurally: a key dropped, a node given a hostile
    value (wrong type, NaN, float, string, negative, zero or huge count, bad dtype or shape), a shard's
    file pointed elsewhere (``../``, absolute, a symlink leading out, a duplicate), deep nesting, random
    JSON; or changed harmlessly (the source, x_min, the alias of a shard, the layout), which must load."""
    places = [p for p in _paths(seed) if p]
    op = draw(st.sampled_from(["set", "set", "drop", "count", "file", "json", "deep", "harmless", "harmless"]))
    value = seed
    if op == "set":
        value = _set(seed, draw(st.sampled_from(places)), draw(st.sampled_from(HOSTILE)))
    elif op == "drop":
        value = _set(seed, draw(st.sampled_from([p for p in places if isinstance(p[-1], str)])), _DROP)
    elif op == "count":
        at = draw(st.sampled_from([p for p in places if p[-1] == "count"]))
        new = draw(st.sampled_from([0, -1, -3, 2**31, 2**62, 2**64, 10**12]) | st.integers(-5, 20))
        value = _set(seed, at, new)
        if draw(st.booleans()) and len(at) > 3:  # the split's count follows: the sums still agree
            total = sum(s["count"] for s in value["splits"][at[1]]["shards"])
            value = _set(value, ("splits", at[1], "count"), total)
    elif op == "file":
        at = draw(st.sampled_from([p for p in places if p[-1] == "file"]))
        value = _set(seed, at, draw(st.sampled_from([*FILES, outside])))
    elif op == "json":
        value = draw(mutated_json(seed))
    elif op == "deep":
        value = _set(seed, draw(st.sampled_from(places)), _DEEP)
    else:
        change = draw(st.sampled_from(["source", "x_min", "alias", "layout"]))
        if change == "source":
            value = _set(seed, ("source",), draw(st.none() | st.text(max_size=20)))
        elif change == "x_min":
            value = _set(seed, ("stats", "x_min"), draw(st.floats(-1e6, 1e6) | st.integers(-100, 100)))
        elif change == "alias":  # a symlink to the very shard, inside the pack
            value = _set(seed, ("splits", "train", "shards", 0, "file"), "alias.array_record")
    text = json.dumps(value, indent=draw(st.sampled_from([None, 1, 4])), sort_keys=draw(st.booleans()))
    depth = draw(st.sampled_from([3, 100, 5000, 200_000]))
    return text.replace(json.dumps(_DEEP), "[" * depth + "]" * depth)


@fuzz_settings(100)
@given(data=st.data())
def test_pack_manifest(pack_seed, data):
    """`diptych data verify` and the loader (`train --data-dir PACK`) on a mutated manifest: loaded, with
    every shard read from inside the pack and the very rows that were packed, or refused in one line."""
    from diptych.data.packed import verify

    folder, seed, rows = pack_seed
    outside = str(folder.parent / "outside.array_record")
    (folder / "manifest.json").write_text(data.draw(mutated_manifest(seed, outside)))
    root = folder.resolve()
    got = loads_or_refuses("pack-verify", lambda: verify(folder))
    if got is not None:
        files = [s["file"] for split in ("train", "test") for s in got["splits"][split]["shards"]]
        assert all((folder / f).resolve().parent == root for f in files), files  # nothing read from outside
        assert [got["splits"][s]["count"] for s in ("train", "test")] == [9, 3]
    got = loads_or_refuses("pack-load", lambda: load_dataset("mnist1d", folder))
    if got is not None:
        assert np.array_equal(got.x_train[np.arange(9)], rows.x_train) and np.array_equal(got.x_test, rows.x_test)
        assert np.array_equal(got.y_train[np.arange(9)], rows.y_train) and np.array_equal(got.y_test, rows.y_test)
        assert np.isfinite(got.x_train.min()) and got.features is None

"""Small image folders drawn on the fly for the own-images tests: circles, squares and crosses at
random places and sizes, saved in a mix of modes (L, RGB, RGBA, palette, 16-bit) and sizes; and PNG files
written chunk by chunk (any header, huge blank images that cost a small file and little memory to make)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "cross", "square")
MODES = ("L", "RGB", "RGBA", "P", "I;16")


def draw(shape: str, rng: np.random.Generator, size: int) -> Image.Image:
    """One white shape on black, about half the image wide, at a random place."""
    img = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(img)
    r = rng.uniform(0.22, 0.32) * size
    cx, cy = rng.uniform(r + 1, size - r - 1, 2)
    box = [cx - r, cy - r, cx + r, cy + r]
    if shape == "circle":
        d.ellipse(box, outline=255, width=max(2, size // 12))
    elif shape == "square":
        d.rectangle(box, outline=255, width=max(2, size // 12))
    else:
        d.line([cx - r, cy, cx + r, cy], fill=255, width=max(2, size // 12))
        d.line([cx, cy - r, cx, cy + r], fill=255, width=max(2, size // 12))
    return img


def save(img: Image.Image, path: Path, mode: str) -> None:
    if mode == "I;16":
        Image.fromarray(np.asarray(img, np.uint16) * 257).save(path)  # 16-bit grey PNG
    elif mode == "RGBA":
        rgba = img.convert("RGBA")
        rgba.putalpha(255)
        rgba.save(path)
    else:
        img.convert(mode).save(path)


def make_folder(root: Path, per_class: int, seed: int = 0, split: bool = True) -> Path:
    """``root/train/<shape>/`` and ``root/test/<shape>/`` (or ``root/<shape>/`` when not ``split``) of PNGs."""
    rng = np.random.default_rng(seed)
    for shape in SHAPES:
        for i in range(per_class):
            side = ("test" if i % 4 == 0 else "train") if split else ""
            folder = root / side / shape
            folder.mkdir(parents=True, exist_ok=True)
            size = int(rng.choice([28, 32, 40]))  # mixed sizes, resized on load
            save(draw(shape, rng, size), folder / f"{shape}{i:03d}.png", MODES[i % len(MODES)])
    return root


def png_chunk(kind: bytes, data: bytes, crc_ok: bool = True) -> bytes:
    """One PNG chunk: length, type, data and its CRC-32 (wrong when not ``crc_ok``)."""
    crc = zlib.crc32(kind + data) ^ (0 if crc_ok else 0xFFFFFFFF)
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def ihdr(width: int, height: int, bit_depth: int = 8, colour: int = 6, interlace: int = 0) -> bytes:
    """An IHDR chunk's data, any values (written modulo their field widths)."""
    return struct.pack(">IIBBBBB", width % 2**32, height % 2**32, bit_depth % 256, colour % 256, 0, 0, interlace % 256)


def png(header: bytes, *chunks: bytes, header_crc_ok: bool = True) -> bytes:
    """A PNG file: the signature, IHDR ``header``, the given chunks (already framed), IEND."""
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header, header_crc_ok) + b"".join(chunks) + png_chunk(b"IEND", b"")


def blank_png(width: int, height: int, channels: int = 4) -> bytes:
    """A valid all-black 8-bit PNG (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA, opaque), made in a fraction of a
    second: a block of identical rows is deflated once and repeated (each ends in a full flush, so the
    copies are independent), and the zlib checksum is carried over the whole. A 9000x9000 RGBA image is
    a file of about 330 KB, as the hostile tester's was."""
    colour = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    row = b"\x00" + (b"\x00" * (channels - 1) + b"\xff" if channels in (2, 4) else b"\x00" * channels) * width
    units, rest = divmod(height, 100)
    block = row * 100
    z = zlib.compressobj(6, zlib.DEFLATED, -15)  # raw deflate: the zlib header and checksum are written here
    body = (z.compress(block) + z.flush(zlib.Z_FULL_FLUSH)) * units + z.compress(row * rest) + z.flush()
    adler = 1
    for _ in range(units):
        adler = zlib.adler32(block, adler)
    adler = zlib.adler32(row * rest, adler)
    return png(ihdr(width, height, 8, colour), png_chunk(b"IDAT", b"\x78\x9c" + body + struct.pack(">I", adler)))

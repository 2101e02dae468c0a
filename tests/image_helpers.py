"""Small image folders drawn on the fly for the own-images tests: circles, squares and crosses at
random places and sizes, saved in a mix of modes (L, RGB, RGBA, palette, 16-bit) and sizes."""

from __future__ import annotations

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

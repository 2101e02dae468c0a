"""Images are decoded under a budget (issue #28): an image over DIPTYCH_MAX_IMAGE_PIXELS, or over Pillow's
decompression-bomb limit, is refused from its header with one line on every surface that reads images
(`predict`, `train --data-dir`, `data pack folder`), within little memory; large allowed images are
reduced before they are converted."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import assert_one_line_error, run_cli
from diptych.backends import load_backend
from diptych.data.images import DEFAULT_MAX_PIXELS, decode
from diptych.errors import DiptychError
from diptych.inference import InferenceMeta
from diptych.tasks import get_task
from diptych.weights import save_weights
from image_helpers import blank_png, draw, ihdr, make_folder, png, png_chunk
from memory_helpers import peak_rss_growth

SIZE = 16


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Untrained image-cnn weights for 16px grey images of two classes: enough for `predict` to decode."""
    features = {"frontend": {"kind": "image", "size": SIZE, "channels": 1}, "mean": 0.5, "std": 0.25}
    task = get_task("image-cnn")
    task = task.objective.for_weights(task, InferenceMeta(features=features, classes=["a", "b"]))
    rng = np.random.default_rng(0)
    params = {k: rng.normal(0, 0.1, s).astype(np.float32) for k, s in task.model.param_shapes().items()}
    path = tmp_path_factory.mktemp("w") / "weights.safetensors"
    save_weights(params, path, task="image-cnn", framework="torch", features=features, classes=["a", "b"])
    return path


@pytest.fixture(scope="module")
def huge(tmp_path_factory):
    """The hostile tester's image: a valid 9000x9000 RGBA PNG of a few hundred KB (1.45 GB in `predict`
    before the budget), beside a folder of good images."""
    root = make_folder(tmp_path_factory.mktemp("huge") / "shapes", per_class=4, split=False)
    path = root / "circle" / "huge.png"
    path.write_bytes(blank_png(9000, 9000, 4))
    assert path.stat().st_size < 1_000_000
    return root, path


def _surface(surface: str, root, path, weights, tmp_path):
    if surface == "predict":
        return run_cli("predict", "image-cnn", "--weights", str(weights), str(path))
    if surface == "train":
        out = str(tmp_path / "run")
        return run_cli(
            "train", "image-cnn", "--framework", "torch", "--data-dir", str(root), "--out", out, "--no-progress"
        )
    pytest.importorskip("array_record")
    return run_cli("data", "pack", "folder", "--data-dir", str(root), "--out", str(tmp_path / "pack"), "--no-progress")


@pytest.mark.parametrize("surface", ["predict", "train", "pack"])
def test_an_image_over_the_limit_is_one_line_on_every_surface_within_little_memory(surface, huge, weights, tmp_path):
    root, path = huge
    if surface == "train":
        load_backend("torch")  # imported first (train does): its import is not what is measured
    proc, grew = peak_rss_growth(lambda: _surface(surface, root, path, weights, tmp_path))
    line = assert_one_line_error(proc, str(path), "9000x9000 = 81,000,000 pixels", "16,777,216 (DIPTYCH_MAX_IMAGE")
    assert "shrink it" in line
    assert grew < 200 * 2**20, f"{grew / 2**20:.0f} MiB"  # decoded, it is 324 MB as Pillow's RGBA alone
    assert not (tmp_path / "pack").exists()


def test_pillows_own_bomb_limit_is_one_line(weights, tmp_path):
    """A header claiming 20000x20000 pixels (Pillow raises DecompressionBombError from its header)."""
    path = tmp_path / "bomb.png"
    path.write_bytes(png(ihdr(20000, 20000, 8, 2), png_chunk(b"IDAT", b"\x78\x9c")))
    proc = run_cli("predict", "image-cnn", "--weights", str(weights), str(path))
    assert_one_line_error(proc, str(path), "400,000,000 pixels", "Pillow's decompression-bomb limit", "shrink it")


def test_between_pillows_warning_and_error_is_refused_not_warned(tmp_path, monkeypatch):
    """Over Pillow's MAX_IMAGE_PIXELS (a DecompressionBombWarning, not an error) with our limit raised past it."""
    monkeypatch.setenv("DIPTYCH_MAX_IMAGE_PIXELS", str(10**9))
    path = tmp_path / "wide.png"
    path.write_bytes(png(ihdr(100_000, 1000, 8, 0), png_chunk(b"IDAT", b"\x78\x9c")))  # 100 Mpx: > 89 Mpx
    with pytest.raises(DiptychError, match=r"100,000,000 pixels, above Pillow's decompression-bomb limit of 89,478"):
        decode(path, SIZE, 1)


def test_the_limit_is_set_by_an_environment_variable(weights, tmp_path, monkeypatch):
    path = tmp_path / "small.png"
    draw("cross", np.random.default_rng(0), 32).save(path)  # 32x32 = 1024 pixels
    monkeypatch.setenv("DIPTYCH_MAX_IMAGE_PIXELS", "1023")
    proc = run_cli("predict", "image-cnn", "--weights", str(weights), str(path))
    assert_one_line_error(proc, "32x32 = 1,024 pixels", "above the limit of 1,023")
    monkeypatch.setenv("DIPTYCH_MAX_IMAGE_PIXELS", "1024")
    proc = run_cli("predict", "image-cnn", "--weights", str(weights), str(path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"{path}\t")
    for bad in ("lots", "0", "-5", "1e6"):
        monkeypatch.setenv("DIPTYCH_MAX_IMAGE_PIXELS", bad)
        proc = run_cli("predict", "image-cnn", "--weights", str(weights), str(path))
        assert_one_line_error(proc, f"DIPTYCH_MAX_IMAGE_PIXELS={bad!r}", "whole number of pixels")


def test_a_photo_over_the_limit_decodes_at_a_fraction_of_its_size(tmp_path):
    """A JPEG is decoded at 1/2..1/8 scale when much larger than the image size: a 6000x4000 photo (24 Mpx,
    over the default limit as declared) decodes to 750x500, cheaply, and to the picture a full decode gives."""
    big = draw("circle", np.random.default_rng(3), 4000).resize((6000, 4000), Image.Resampling.BILINEAR)
    path = tmp_path / "photo.jpg"
    big.save(path, quality=90)
    assert 6000 * 4000 > DEFAULT_MAX_PIXELS
    got, grew = peak_rss_growth(lambda: decode(path, SIZE, 3))
    want = np.asarray(big.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR), np.float32) / 255
    assert got.shape == (3, SIZE, SIZE) and np.abs(got - want.transpose(2, 0, 1)).mean() < 0.02
    assert grew < 24 * 2**20, f"{grew / 2**20:.0f} MiB"  # decoded at full scale: 96 MB as RGB pixels


def test_a_large_allowed_image_is_reduced_before_it_is_converted(tmp_path):
    """4096x4096 RGBA (at the default limit): decoded, then box-reduced before the alpha compositing and
    the conversion, which would otherwise hold several more 64 MB copies; the same picture as a full-size
    bilinear resize."""
    rgba = draw("square", np.random.default_rng(4), 512).convert("RGBA").resize((4096, 4096))
    path = tmp_path / "big.png"
    rgba.save(path, compress_level=1)
    got, grew = peak_rss_growth(lambda: decode(path, SIZE, 3))
    want = np.asarray(rgba.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR), np.float32) / 255
    assert got.shape == (3, SIZE, SIZE) and np.abs(got - want.transpose(2, 0, 1)).mean() < 0.02
    assert grew < 192 * 2**20, f"{grew / 2**20:.0f} MiB"  # before: 256 MiB (several 64 MB copies)

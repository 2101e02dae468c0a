"""Your own images (issue #13): a drawn-shapes folder trained in both twins, `predict` with the other
twin's weights, and every bad-input case in one clear line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli
from diptych.data.images import decode, decode_all, find_splits, load_image_folder
from diptych.driver import RunConfig, train_and_evaluate
from diptych.errors import DiptychError
from diptych.weights import read_safetensors
from image_helpers import MODES, SHAPES, draw, make_folder, save


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The shapes folder and the weights each twin trained on it."""
    root = make_folder(tmp_path_factory.mktemp("data") / "shapes", per_class=40)
    runs = {}
    for fw in ("torch", "jax"):
        out = tmp_path_factory.mktemp(fw)
        rec = train_and_evaluate(
            RunConfig("image-cnn", fw, data_dir=str(root), image_size=24, epochs=10, batch_size=16, progress=False), out
        )
        runs[fw] = (rec, out / "weights.safetensors")
    return root, runs


def test_both_twins_learn_the_shapes(trained):
    _, runs = trained
    for fw, (rec, weights) in runs.items():
        assert rec["test_accuracy"] >= 0.85, fw
        assert rec["dataset"]["classes"] == list(SHAPES) and rec["config"]["image_size"] == 24
        assert rec["config"]["augment"] == "shift:2"  # run.json records what was applied
        _, meta = read_safetensors(weights)
        assert meta["classes"] == list(SHAPES) and meta["features"]["frontend"]["size"] == 24


@pytest.mark.parametrize("trainer,runner", [("torch", "jax"), ("jax", "torch")])
def test_predict_with_the_other_twins_weights(trained, trainer, runner):
    root, runs = trained
    images = [str(p) for shape in SHAPES for p in sorted((root / "test" / shape).iterdir())[:3]]
    proc = run_cli("predict", "image-cnn", "--weights", str(runs[trainer][1]), "--framework", runner, "--json", *images)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    right = sum(r["class"] == r["file"].split("/")[-2] for r in results)
    assert right >= 8 and all(0 < r["probability"] <= 1 for r in results)


def test_predict_prints_file_class_probability(trained):
    root, runs = trained
    image = sorted((root / "test" / "cross").iterdir())[0]
    proc = run_cli("predict", "image-cnn", "--weights", str(runs["torch"][1]), str(image))
    assert proc.returncode == 0, proc.stderr
    file, cls, prob = proc.stdout.strip().split("\t")
    assert file == str(image) and cls == "cross" and 0.5 < float(prob) <= 1


def test_every_mode_converts_to_the_same_picture(tmp_path):
    img = draw("circle", np.random.default_rng(1), 32)
    pictures = {}
    for mode in MODES:
        save(img, tmp_path / f"{mode.replace(';', '')}.png", mode)
        pictures[mode] = decode(tmp_path / f"{mode.replace(';', '')}.png", 24, 1)
    for mode, pic in pictures.items():
        assert pic.shape == (24, 24) and np.abs(pic - pictures["L"]).max() < 0.02, mode
    assert decode(tmp_path / "RGB.png", 24, 3).shape == (3, 24, 24)


def test_a_changed_image_is_never_served_stale(tmp_path):
    root = make_folder(tmp_path / "f", per_class=2, split=False)
    files = sorted(root.rglob("*.png"))
    before = decode_all(files, 16, 1, progress=False)
    Image.new("L", (16, 16), 255).save(files[0])
    after = decode_all(files, 16, 1, progress=False)
    assert after[0].min() == 1.0 and before[0].min() == 0.0 and np.array_equal(before[1:], after[1:])


def test_val_fraction_split_is_stable_and_by_name(tmp_path):
    root = make_folder(tmp_path / "flat", per_class=30, split=False)
    names, splits = find_splits(root, 0.3, 0)
    assert names == list(SHAPES) and 10 <= len(splits["test"]) <= 45
    (root / "circle" / "zz_new.png").write_bytes((root / "circle" / "circle000.png").read_bytes())
    _, again = find_splits(root, 0.3, 0)
    assert set(splits["test"]) <= set(again["test"])  # adding a file moves no other file


def _bad(tmp_path, build) -> str:
    root = make_folder(tmp_path / "bad", per_class=4)
    build(root)
    with pytest.raises(DiptychError) as e:
        load_image_folder(root, 16, 1)
    return str(e.value)


def test_a_truncated_image_names_the_file(tmp_path):
    def truncate(root):
        path = root / "train" / "circle" / "circle001.png"
        path.write_bytes(path.read_bytes()[:60])

    assert "circle001.png" in _bad(tmp_path, truncate)


def test_an_unreadable_image_names_the_file(tmp_path):
    assert "notes.png" in _bad(tmp_path, lambda r: (r / "train" / "square" / "notes.png").write_text("hello"))


def test_an_empty_class_folder(tmp_path):
    assert "has no images" in _bad(tmp_path, lambda r: (r / "train" / "star").mkdir())


def test_a_test_class_unseen_in_training(tmp_path):
    def extra(root):
        (root / "test" / "star").mkdir()
        save(draw("cross", np.random.default_rng(0), 28), root / "test" / "star" / "s.png", "L")

    assert "'star' has no training images" in _bad(tmp_path, extra)


def test_a_single_class(tmp_path):
    root = make_folder(tmp_path / "one", per_class=4, split=False)
    for shape in SHAPES[1:]:
        for f in (root / shape).iterdir():
            f.unlink()
        (root / shape).rmdir()
    with pytest.raises(DiptychError, match="only one class"):
        load_image_folder(root, 16, 1)


def test_no_images_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = run_cli(
        "train",
        "image-cnn",
        "--framework",
        "torch",
        "--data-dir",
        str(tmp_path / "empty"),
        "--out",
        str(tmp_path / "run"),
        "--no-progress",
    )
    assert proc.returncode == 2 and "no class folders with images" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_augment_preview_writes_a_grid(trained, tmp_path):
    root, _ = trained
    proc = run_cli(
        "augment-preview",
        "image-cnn",
        "--data-dir",
        str(root),
        "--augment",
        "shift:2,rotate:20,erase",
        "--out",
        str(tmp_path / "grid.png"),
    )
    assert proc.returncode == 0, proc.stderr
    with Image.open(tmp_path / "grid.png") as grid:
        assert grid.size[0] > 400 and grid.size[1] > 200


def test_eval_in_the_other_twin_gives_the_trained_accuracy(trained):
    root, runs = trained
    rec, weights = runs["torch"]
    proc = run_cli(
        "eval", "image-cnn", "--framework", "jax", "--weights", str(weights), "--data-dir", str(root), "--json"
    )
    assert proc.returncode == 0, proc.stderr
    assert abs(json.loads(proc.stdout)["test_accuracy"] - rec["test_accuracy"]) < 1e-9

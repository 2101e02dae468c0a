"""Every bad-input case through the real CLI: one line on stderr, exit code 2, no traceback,
nothing corrupted."""

import numpy as np
import pytest

from conftest import assert_one_line_error, cli_in_process, run_cli
from diptych.data.datasets import IDX_SOURCES
from diptych.data.idx import write_idx


def test_unknown_task_lists_choices():
    assert_one_line_error(
        cli_in_process("train", "mnist-resnet", "--framework", "torch"),
        "'mnist-resnet' is not one of",
        "mnist-cnn",
        "mnist1d-mlp",
    )


def test_unknown_framework_lists_choices():
    assert_one_line_error(cli_in_process("train", "mnist-cnn", "--framework", "tensorflow"), "'torch'", "'jax'")


def test_unknown_option_lists_valid_options():
    assert_one_line_error(
        cli_in_process("train", "mnist-cnn", "--framework", "jax", "--learning-rate", "1"),
        "no such option --learning-rate",
        "--lr",
        "--epochs",
    )


def test_unknown_compare_framework():
    assert_one_line_error(
        cli_in_process("compare", "mnist1d-mlp", "--frameworks", "torch,mxnet"), "mxnet", "torch, jax"
    )


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--lr", "0"], "--lr"),
        (["--lr", "-0.1"], "--lr"),
        (["--epochs", "0"], "--epochs"),
        (["--epochs", "-2"], "--epochs"),
        (["--epochs", "nan"], "--epochs"),
        (["--label-smoothing", "1"], "--label-smoothing"),
        (["--batch-size", "0"], "--batch-size"),
        (["--batch-size", "100000"], "larger than the 4000 training samples"),
    ],
)
def test_non_positive_values(args, needle, tmp_path):
    proc = cli_in_process("train", "mnist1d-mlp", "--framework", "torch", "--out", str(tmp_path / "r"), *args)
    assert_one_line_error(proc, needle)
    assert not (tmp_path / "r" / "run.json").exists()


def _write_mnist(folder, n_train=6, n_test=4, gz=False):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for role, stem in IDX_SOURCES["mnist"].files.items():
        n = n_train if "train" in role else n_test
        arr = rng.integers(0, 256, (n, 28, 28)) if "images" in role else rng.integers(0, 10, n)
        write_idx(folder / (stem + (".gz" if gz else "")), arr)


def test_truncated_idx_names_the_file(tmp_path):
    _write_mnist(tmp_path / "data")
    f = tmp_path / "data" / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-100])
    line = assert_one_line_error(
        cli_in_process(
            "eval",
            "mnist-mlp",
            "--framework",
            "torch",
            "--weights",
            str(tmp_path / "w.safetensors"),
            "--data-dir",
            str(tmp_path / "data"),
        ),
        "w.safetensors does not exist",
    )
    # The weights are checked first; now give real weights so the data is read and refused.
    _train_tiny_weights(tmp_path)
    line = assert_one_line_error(
        cli_in_process(
            "eval",
            "mnist-mlp",
            "--framework",
            "torch",
            "--weights",
            str(tmp_path / "mlp.safetensors"),
            "--data-dir",
            str(tmp_path / "data"),
        ),
        "train-images-idx3-ubyte: truncated",
        "delete it",
    )
    assert str(f) in line


def test_corrupt_idx_magic(tmp_path):
    _write_mnist(tmp_path / "data")
    (tmp_path / "data" / "t10k-labels-idx1-ubyte").write_bytes(b"<html>404 not found</html>")
    _train_tiny_weights(tmp_path)
    assert_one_line_error(
        cli_in_process(
            "eval",
            "mnist-mlp",
            "--framework",
            "jax",
            "--weights",
            str(tmp_path / "mlp.safetensors"),
            "--data-dir",
            str(tmp_path / "data"),
        ),
        "t10k-labels-idx1-ubyte: not an IDX ubyte file",
    )


def test_md5_mismatch_refused(tmp_path):
    _write_mnist(tmp_path / "data", gz=True)  # well-formed, but not the official files
    proc = cli_in_process(
        "train", "mnist-cnn", "--framework", "torch", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "r")
    )
    assert_one_line_error(proc, "MD5", "does not match the official f68b3c2dcbeaaa9fbdd348bbdeb94873")


def test_missing_data_offline_says_where_to_put_files(tmp_path, monkeypatch):
    monkeypatch.delenv("DIPTYCH_DATA", raising=False)
    monkeypatch.setenv("DIPTYCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DIPTYCH_OFFLINE", "1")
    (tmp_path / "nothing").mkdir()  # an empty folder: one that does not exist is refused as such (test_bad_values)
    proc = cli_in_process(
        "train",
        "fashion-mnist-cnn",
        "--framework",
        "jax",
        "--data-dir",
        str(tmp_path / "nothing"),
        "--out",
        str(tmp_path / "r"),
    )
    assert_one_line_error(
        proc,
        "fashion-mnist: train-images-idx3-ubyte.gz not found",
        str(tmp_path / "cache" / "fashion-mnist"),
        "--data-dir",
    )


def _train_tiny_weights(tmp_path):
    """Real mnist-mlp weights, exported by the torch twin without training."""
    from diptych.backends import load_backend
    from diptych.tasks import get_task
    from diptych.weights import save_weights

    t = load_backend("torch")
    save_weights(
        t.weights.export(t.models.build_model(get_task("mnist-mlp").model)),
        tmp_path / "mlp.safetensors",
        task="mnist-mlp",
    )


def test_weights_of_another_model_refused(tmp_path):
    _train_tiny_weights(tmp_path)
    assert_one_line_error(
        cli_in_process("eval", "mnist-cnn", "--framework", "jax", "--weights", str(tmp_path / "mlp.safetensors")),
        "missing tensor 'conv1.weight'",
        "another model",
    )


def test_truncated_weights_refused(tmp_path):
    _train_tiny_weights(tmp_path)
    raw = (tmp_path / "mlp.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(raw[: len(raw) // 2])
    assert_one_line_error(
        cli_in_process("eval", "mnist-mlp", "--framework", "torch", "--weights", str(tmp_path / "cut.safetensors")),
        "truncated or corrupt",
    )


def test_nan_loss_stops_with_step_and_keeps_checkpoint(tmp_path):
    out = tmp_path / "run"
    ok = run_cli(
        "train",
        "mnist1d-mlp",
        "--framework",
        "torch",
        "--optimizer",
        "sgd",
        "--lr",
        "0.05",
        "--epochs",
        "1",
        "--out",
        str(out),
        "--no-progress",
    )
    assert ok.returncode == 0, ok.stderr
    before = (out / "checkpoint.safetensors").read_bytes()
    proc = run_cli(
        "train",
        "mnist1d-mlp",
        "--framework",
        "torch",
        "--resume",
        "--epochs",
        "3",
        "--lr",
        "1e6",
        "--out",
        str(out),
        "--no-progress",
    )
    line = assert_one_line_error(proc, "loss became", "at step", "last good checkpoint", "lower --lr")
    step = int(line.split("at step ")[1].split()[0])
    assert step > 40  # epoch 1 (40 steps) was fine; it diverged while resuming
    assert (out / "checkpoint.safetensors").read_bytes() == before


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_resume_from_checkpoint_of_another_task(tmp_path, framework):
    out = tmp_path / "run"
    ok = run_cli("train", "mnist1d-mlp", "--framework", framework, "--epochs", "1", "--out", str(out), "--no-progress")
    assert ok.returncode == 0, ok.stderr
    before = (out / "checkpoint.safetensors").read_bytes()
    proc = cli_in_process("train", "mnist1d-cnn", "--framework", framework, "--resume", "--out", str(out))
    assert_one_line_error(proc, "checkpoint of task 'mnist1d-mlp', not 'mnist1d-cnn'")
    assert (out / "checkpoint.safetensors").read_bytes() == before


def test_resume_without_checkpoint(tmp_path):
    assert_one_line_error(
        cli_in_process("train", "mnist1d-mlp", "--framework", "jax", "--resume", "--out", str(tmp_path / "empty")),
        "no checkpoint to resume",
    )


@pytest.mark.parametrize("value", [0, 255])
def test_constant_idx_images_are_named_not_a_diverged_loss(tmp_path, value):
    """All-black (or all-one-value) training images: standardizing divides by a zero std, and the NaN
    inputs used to stop training with "loss became nan ...; lower --lr". The load names the real cause."""
    _write_mnist(tmp_path / "data", n_train=20)
    write_idx(tmp_path / "data" / "train-images-idx3-ubyte", np.full((20, 28, 28), value, np.uint8))
    line = assert_one_line_error(
        cli_in_process(
            "train",
            "mnist-mlp",
            "--framework",
            "torch",
            "--data-dir",
            str(tmp_path / "data"),
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--out",
            str(tmp_path / "r"),
            "--no-progress",
        ),
        f"every pixel of all 20 training images is {value}",
        "nothing to learn",
    )
    assert ("all black" in line) == (value == 0) and "--lr" not in line
    assert not (tmp_path / "r" / "run.json").exists()


def test_resume_when_the_checkpoint_is_a_folder(tmp_path):
    (tmp_path / "run" / "checkpoint.safetensors").mkdir(parents=True)
    line = assert_one_line_error(
        cli_in_process("train", "mnist1d-mlp", "--framework", "torch", "--resume", "--out", str(tmp_path / "run")),
        "checkpoint.safetensors is a folder, not a checkpoint file",
    )
    assert "does not exist" not in line and (tmp_path / "run" / "checkpoint.safetensors").is_dir()


@pytest.mark.parametrize("what", ["weights", "checkpoint"])
def test_a_folder_given_as_a_weights_or_checkpoint_file(tmp_path, what):
    from diptych.errors import DiptychError
    from diptych.formats import read_any
    from diptych.weights import read_safetensors

    (tmp_path / "w.safetensors").mkdir()
    with pytest.raises(DiptychError, match=f"{what} file .*w.safetensors is a folder, not a file"):
        read_safetensors(tmp_path / "w.safetensors", what=what)
    with pytest.raises(DiptychError, match="is a folder, not a file"):
        read_any(tmp_path / "w.safetensors")
    with pytest.raises(DiptychError, match="does not exist"):
        read_any(tmp_path / "none.safetensors")


@pytest.mark.parametrize("missing,other", [("jax", "torch"), pytest.param("torch", "jax", marks=pytest.mark.full)])
def test_only_one_framework_installed(missing, other, tmp_path):
    """With one framework absent, its twin's commands say which extra to install; the other works."""
    import subprocess
    import sys

    code = (
        f"import sys; sys.modules[{missing!r}] = None\n"  # makes `import {missing}` fail
        "from diptych.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )

    def run(*args):
        return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)

    assert_one_line_error(
        run("train", "mnist1d-mlp", "--framework", missing, "--out", str(tmp_path / "a")),
        f"pip install 'diptych[{missing}]'",
    )
    ok = run(
        "train", "mnist1d-mlp", "--framework", other, "--epochs", "1", "--out", str(tmp_path / "b"), "--no-progress"
    )
    assert ok.returncode == 0, ok.stderr

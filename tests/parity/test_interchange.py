"""Weights move between the twins: native formats both ways, safe loading, a run continued by the other twin
(the same predictions after a full training run: tests/targets)."""

import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from conftest import assert_one_line_error, cli_in_process, run_cli
from diptych.tasks import TASKS


def _random_weights(task, seed=0):
    rng = np.random.default_rng(seed)
    return {k: rng.normal(0, 0.1, s).astype(np.float32) for k, s in TASKS[task].model.param_shapes().items()}


@pytest.mark.parametrize("task", ["mnist-cnn", "mnist-mlp", "mnist1d-cnn"])
def test_convert_round_trip_through_native_formats(task, tmp_path):
    w = _random_weights(task)
    save_file(w, tmp_path / "w.safetensors")
    for src, dst in [("w.safetensors", "w.pt"), ("w.pt", "w.msgpack"), ("w.msgpack", "back.safetensors")]:
        proc = run_cli("convert", str(tmp_path / src), str(tmp_path / dst))
        assert proc.returncode == 0, proc.stderr
    back = load_file(tmp_path / "back.safetensors")
    assert set(back) == set(w) and all(np.array_equal(back[k], w[k]) for k in w)


def test_native_files_load_the_way_each_framework_loads_them(tmp_path):
    """The .pt is a plain state_dict; the .msgpack restores into an NNX model; same logits."""
    import flax.serialization
    import jax.numpy as jnp
    import torch
    from flax import nnx

    from diptych.backends.jax.models import build_model as jax_model
    from diptych.backends.torch.models import build_model as torch_model
    from diptych.commands.convert import convert

    spec = TASKS["mnist-cnn"].model
    save_file(_random_weights("mnist-cnn"), tmp_path / "w.safetensors")
    convert(tmp_path / "w.safetensors", tmp_path / "w.pt")
    convert(tmp_path / "w.safetensors", tmp_path / "w.msgpack")

    tm = torch_model(spec, seed=1)
    tm.load_state_dict(torch.load(tmp_path / "w.pt", weights_only=True))
    jm = jax_model(spec, seed=2)
    state = nnx.state(jm, nnx.Param)
    nnx.replace_by_pure_dict(state, flax.serialization.msgpack_restore((tmp_path / "w.msgpack").read_bytes()))
    nnx.update(jm, state)

    x = np.random.default_rng(1).standard_normal((8, 28, 28)).astype(np.float32)
    with torch.no_grad():
        t_out = tm(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(np.asarray(jm(jnp.asarray(x))), t_out, atol=1e-5, rtol=0)


def test_init_from_other_twins_weights(tmp_path):
    src = tmp_path / "torch"
    trained = cli_in_process(
        "train", "mnist1d-mlp", "--framework", "torch", "--epochs", "1", "--out", str(src), "--no-progress"
    )
    assert trained.returncode == 0, trained.stderr
    converted = cli_in_process("convert", str(src / "weights.safetensors"), str(tmp_path / "w.pt"))
    assert converted.returncode == 0 and (tmp_path / "w.pt").is_file(), converted.stderr
    proc = cli_in_process(
        "train",
        "mnist1d-mlp",
        "--framework",
        "jax",
        "--epochs",
        "1",
        "--lr",
        "1e-12",
        "--optimizer",
        "sgd",
        "--init-from",
        str(tmp_path / "w.pt"),
        "--out",
        str(tmp_path / "jax"),
        "--json",
        "--no-progress",
    )
    assert proc.returncode == 0, proc.stderr
    a, b = load_file(src / "weights.safetensors"), load_file(tmp_path / "jax" / "weights.safetensors")
    for k in a:  # lr 1e-12: the JAX run ends where the torch weights started it
        np.testing.assert_allclose(b[k], a[k], atol=1e-6, rtol=0)


def _losses_after(folder, step: int) -> list[tuple[int, float]]:
    points = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return [(p["step"], p["train/loss"]) for p in points if "train/loss" in p and p["step"] > step]


def test_checkpoint_resumes_in_the_other_framework(tmp_path):
    """torch trains 2 epochs; JAX resumes its checkpoint for a third. JAX starts from torch's state, weights
    and Adam moments both: its first losses are those of torch continuing its own run (a JAX run from its
    own initialization starts near 2.3; torch's weights with fresh Adam moments give a loss 4% off)."""
    out = tmp_path / "run"
    first = cli_in_process(
        "train", "mnist1d-mlp", "--framework", "torch", "--epochs", "2", "--out", str(out), "--no-progress"
    )
    assert first.returncode == 0, first.stderr
    shutil.copytree(out, tmp_path / "torch")  # the same checkpoint, continued by torch itself
    runs = {}
    for framework, folder in (("jax", out), ("torch", tmp_path / "torch")):
        proc = cli_in_process(
            "train",
            "mnist1d-mlp",
            "--framework",
            framework,
            "--epochs",
            "3",
            "--resume",
            "--out",
            str(folder),
            "--json",
            "--no-progress",
        )
        assert proc.returncode == 0, proc.stderr
        runs[framework] = json.loads(proc.stdout)
    run, torch_run = runs["jax"], runs["torch"]
    assert [e["epoch"] for e in run["epochs"]] == [1, 2, 3] and run["framework"] == "jax"
    assert run["epochs"][:2] == torch_run["epochs"][:2]  # the history came with the checkpoint
    assert run["epochs"][2]["train_loss"] < run["epochs"][1]["train_loss"]  # and training went on
    steps = 2 * 4000 // 16  # where torch's checkpoint left off
    jax_points, torch_points = _losses_after(out, steps), _losses_after(tmp_path / "torch", steps)
    assert jax_points[0][0] == torch_points[0][0] == steps + 20  # the first loss sync after the resume
    assert jax_points[0][1] == pytest.approx(torch_points[0][1], rel=1e-5), (jax_points[:3], torch_points[:3])
    assert run["epochs"][2]["train_loss"] == pytest.approx(torch_run["epochs"][2]["train_loss"], rel=1e-3)


def _one_line_exit_2(proc, needle):
    assert_one_line_error(proc, needle)


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_refuses_float64_weights_that_float32_cannot_hold(tmp_path, framework):
    """float64 weights are converted only when the conversion is lossless (#16); others are refused."""
    w = {k: v.astype(np.float64) for k, v in _random_weights("mnist1d-cnn").items()}
    w["fc1.bias"][0] += 1e-12  # no float32 holds this value exactly
    save_file(w, tmp_path / "w.safetensors")
    _one_line_exit_2(
        run_cli("eval", "mnist1d-cnn", "--framework", framework, "--weights", str(tmp_path / "w.safetensors")),
        "float32 cannot hold exactly",
    )


def test_refuses_weights_of_another_model_and_truncation(tmp_path):
    save_file(_random_weights("mnist1d-mlp"), tmp_path / "mlp.safetensors")
    _one_line_exit_2(
        run_cli("eval", "mnist1d-cnn", "--framework", "jax", "--weights", str(tmp_path / "mlp.safetensors")),
        "another model",
    )
    raw = (tmp_path / "mlp.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(raw[:-100])
    _one_line_exit_2(
        run_cli("convert", str(tmp_path / "cut.safetensors"), str(tmp_path / "x.pt")), "truncated or corrupt"
    )
    assert not (tmp_path / "x.pt").exists()


def test_refuses_a_pickle_that_is_not_weights(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"fc1.weight": Evil()}))
    proc = run_cli("convert", str(tmp_path / "evil.pt"), str(tmp_path / "w.safetensors"))
    _one_line_exit_2(proc, "not a readable PyTorch state_dict")
    assert "this must never run" not in proc.stdout

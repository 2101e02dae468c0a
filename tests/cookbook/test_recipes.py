"""Every cookbook recipe, both frameworks, fast mode, through ``diptych cookbook run --json``: the printed
results are the answers (accuracy reached, optimum reached, trajectories equal, derivatives equal to
finite differences, same batches). Each recipe runs in its own process, torch then JAX, never at once;
JAX's float64 (``jax_enable_x64``) stays inside the recipes' processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import real_data_dir
from diptych.cookbook import RECIPES

# The whole cookbook is the full tier (the fast tier runs `cookbook run` up to a recipe's own one-line
# refusal: tests/cookbook/test_cookbook_cli.py).
full = pytest.mark.full

NEEDS = {
    "mlp": "mnist",
    "cnn": "mnist",
    "augmentation": "mnist",
    "data-loading": "mnist",
    "gpu": "mnist",
    "schedules": "mnist",
    "speech": "fsdd",
}
# torch with one intra-op thread: on a small shared machine its threads otherwise wait on each other
ENV = {"OMP_NUM_THREADS": "1"}


def cookbook(*args: str, cwd=None, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "diptych", "cookbook", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, **ENV},
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """``pair(name)`` -> {"torch": result, "jax": result} from one ``cookbook run NAME --fast --json``."""
    cache = {}

    def get(name: str) -> dict:
        if name in NEEDS:
            real_data_dir(NEEDS[name])  # skips, saying how to provide the data, when it is absent
        if name not in cache:
            proc = cookbook("run", name, "--fast", "--json", cwd=tmp_path_factory.mktemp(name))
            assert proc.returncode == 0, proc.stderr[-2000:]
            cache[name] = json.loads(proc.stdout.strip().splitlines()[-1])
            assert set(cache[name]) == {"torch", "jax"}
            assert all(r["recipe"] == name and r["framework"] == fw for fw, r in cache[name].items())
        return cache[name]

    return get


def both(result: dict):
    return result["torch"], result["jax"]


@full
def test_mlp(pair):
    for r in both(pair("mlp")):
        assert r["test_accuracy"] >= 0.92, r  # 200 steps; the full run's bar is 97.5%


@full
def test_cnn(pair):
    for r in both(pair("cnn")):
        assert r["test_accuracy"] >= 0.8, r  # 60 steps; the full run's bar is 98.5%


@full
def test_augmentation_keeps_labels_and_flips_do_not(pair):
    for r in both(pair("augmentation")):
        assert r["clean_accuracy"] >= 0.8 and r["augmented_accuracy"] >= 0.65, r
        assert r["flipped_accuracy"] <= r["augmented_accuracy"] - 0.2, r  # a mirrored digit is another symbol
        assert max(r["flipped_accuracy_by_digit"][d] for d in (3, 5, 7)) < 0.3, r
        with open(r["png"], "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@full
def test_rnn_windows_and_held_out_forecast(pair):
    for r in both(pair("rnn")):
        assert (r["train_windows"], r["test_windows"]) == (2400 - 20, 600 - 20), r  # N - T windows per split
        assert r["test_mse"] < 0.5 * r["naive_mse"], r


@full
def test_autodiff_matches_finite_differences(pair):
    torch_r, jax_r = both(pair("autodiff"))
    for r in (torch_r, jax_r):
        assert set(r["errors"]) == {
            "grad",
            "value_and_grad",
            "jacfwd",
            "jacrev",
            "hessian",
            "hvp",
            "per_example",
            "custom",
        }
        assert r["max_error"] <= 1e-6, r["errors"]
        assert r["naive_grad_at_1000"] == "nan"  # why the custom gradient exists
    for k, v in torch_r["values"].items():
        np.testing.assert_allclose(v, jax_r["values"][k], rtol=1e-10, atol=1e-12, err_msg=k)


@full
def test_gradient_descent_reaches_the_known_minima(pair):
    torch_r, jax_r = both(pair("gradient-descent"))
    for problem in ("quadratic", "rosenbrock"):
        for r in (torch_r, jax_r):
            assert r[problem]["error"] < 1e-4, r
        np.testing.assert_allclose(torch_r[problem]["x"], jax_r[problem]["x"], rtol=1e-10)


@full
def test_optimizers_follow_the_libraries(pair):
    for r in both(pair("optimizers")):
        assert set(r["errors"]) == {
            f"{problem}/{name}"
            for problem in ("rosenbrock", "logistic")
            for name in ("sgd", "momentum", "nesterov", "adam", "adamw")
        }, r  # that each of these comparisons can fail: test_optimizer_checks_fail.py
        assert r["max_rel_error"] <= 1e-6, r["errors"]


@full
def test_jit_tracing_vs_compiling(pair):
    torch_r, jax_r = both(pair("jit"))
    for r in (torch_r, jax_r):
        assert r["compiled_equals_eager"] and 0 < r["compiles"] < r["calls"], r  # a repeated shape: no new compile
    assert jax_r["compiles"] == 4 and jax_r["side_effect_runs_in_3_calls"] == 1  # one trace per new shape
    assert torch_r["compiles"] == 2 and torch_r["side_effect_runs_in_3_calls"] == 3  # dynamic after 2 shapes
    assert torch_r["side_effect_compiles"] == 3  # a body that mutates a global list: recompiled at every call
    assert jax_r["global_changed_to_zeros_read_as"] == jax_r["global_before"] != 0  # stale constant
    assert torch_r["global_changed_to_zeros_read_as"] == 0.0  # guard failed, recompiled
    assert jax_r["program_chars"]["closure"] > 100 * jax_r["program_chars"]["argument"]  # data baked in
    assert jax_r["rng"] == {"same_call_twice_equal": True, "split_key_differs": True}
    assert torch_r["rng"] == {"same_call_twice_equal": False, "reseed_reproduces": True}


@full
def test_data_loading_gives_the_same_batches(pair):
    torch_r, jax_r = both(pair("data-loading"))
    assert torch_r["batches"] == jax_r["batches"] == 50
    assert torch_r["batch_shape"] == jax_r["batch_shape"] == [128, 28, 28]
    assert torch_r["sha256"] == jax_r["sha256"]


@full
def test_gpu_falls_back_and_says_so(pair):
    for r in both(pair("gpu")):
        assert r["test_accuracy"] >= 0.5, r  # 20 bf16 steps
        assert "bfloat16" in r["compute_dtype"] and "float32" in r["param_dtype"], r
        if not r["accelerator"]:
            assert r["note"] == "no GPU found: ran on the CPU" and r["device"].startswith("cpu"), r


@full
def test_distributed_two_devices_give_one_devices_loss(pair):
    torch_r, jax_r = both(pair("distributed"))
    for r in (torch_r, jax_r):
        assert len(r["loss_2_devices"]) == len(r["loss_1_device"]) == 20
        assert r["max_rel_diff"] <= 1e-5, r
    assert jax_r["shards"] == ["(32, 20)", "(32, 20)"]
    np.testing.assert_allclose(torch_r["loss_1_device"], jax_r["loss_1_device"], rtol=1e-5)  # same model, same data


@full
def test_large_data_streams_in_bounded_memory(pair):
    for r in both(pair("large-data")):
        assert r["file_mb"] > 40 and r["steps"] == 391, r
        assert r["rss_growth_mb"] < r["file_mb"] / 2, r
        assert r["weight_error"] < 1e-2, r


@full
def test_schedules(pair):
    torch_r, jax_r = both(pair("schedules"))
    np.testing.assert_allclose(torch_r["lr"], jax_r["lr"], rtol=1e-4, atol=1e-9)  # SequentialLR == optax schedule
    assert torch_r["lr"][3] == pytest.approx(1e-3) and torch_r["lr"][0] == pytest.approx(1e-6)
    for r in (torch_r, jax_r):
        assert r["test_accuracy"] >= 0.85 and 0 < r["clipped_fraction"] <= 1, r


@full
def test_speech(pair):
    for r in both(pair("speech")):
        assert r["test_recordings"] == 300 and r["test_accuracy"] >= 0.7, r


def test_every_recipe_is_tested():
    tested = {name.removeprefix("test_") for name in globals() if name.startswith("test_")}
    assert all(any(t.startswith(n.replace("-", "_")) for t in tested) for n in RECIPES)

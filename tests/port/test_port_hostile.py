"""`diptych port check` with hostile input (issue #28): a shape too large for memory, inputs the model does
not take, models that return nothing or integers, and user code that exits or interrupts: one line and exit
2 each, never a traceback and never the user's exit code; a real Ctrl-C still interrupts (exit 130)."""

from __future__ import annotations

import signal

import pytest

from conftest import assert_one_line_error, run_cli

pytest.importorskip("torch")
pytest.importorskip("flax")

MODELS = """
import os, signal, sys, time
import torch
from flax import nnx


def torch_model():
    return torch.nn.Linear(16, 4)


def nnx_model(rngs):
    return nnx.Linear(16, 4, rngs=rngs)


class Argmax(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(16, 4)

    def forward(self, x):
        return self.fc(x).argmax(-1)


class Silent(Argmax):
    def forward(self, x):
        self.fc(x)


def exits():
    sys.exit(3)


def interrupts():
    raise KeyboardInterrupt


def ctrl_c():  # what a user's Ctrl-C does while the factory runs
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(5)
"""


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    path = tmp_path_factory.mktemp("port") / "models.py"
    path.write_text(MODELS)
    return lambda name: f"{path}:{name}"


def check(models, torch_name="torch_model", nnx_name="nnx_model", *args):
    return run_cli("port", "check", models(torch_name), models(nnx_name), *args)


def test_an_input_too_large_for_memory_is_refused_before_it_is_drawn(models):
    proc = check(models, "torch_model", "nnx_model", "--input", "100000,100000")
    assert_one_line_error(proc, "--input 100000,100000", "149.0 GiB", "above the limit of 1.0 GiB")
    proc = check(models, "torch_model", "nnx_model", "--input", "2,16", "--input", str(2**40), "--dtype", "int64")
    assert_one_line_error(proc, "32,768.0 GiB", "int64")  # every input counts; math.prod never wraps
    proc = check(models, "torch_model", "nnx_model", "--input", ",".join(["1"] * 40))
    assert_one_line_error(proc, "40 dimensions")


@pytest.mark.parametrize(
    "option,value,needle",
    [
        ("--seed", "-1", "not in the range 0<=x<=4294967295"),  # numpy's generator takes no negative seed
        ("--vocab", str(10**30), "not in the range 1<=x<="),  # ids are drawn as int64
        ("--lr", "inf", "inf is not a finite number"),
        ("--lr", "nan", "nan is not a finite number"),  # passes FloatRange: no comparison with nan holds
    ],
)
def test_options_out_of_range_are_one_line(models, option, value, needle):
    proc = check(models, "torch_model", "nnx_model", "--input", "2,16", "--dtype", "int64", option, value)
    assert_one_line_error(proc, option, needle)


@pytest.mark.parametrize(
    "args,needles",
    [
        (["--input", "2,100"], ["input 2,100 (float32)", "mat1 and mat2 shapes cannot be multiplied"]),
        (["--input", "2,16", "--dtype", "int64"], ["input 2,16 (int64)", "RuntimeError"]),
    ],
)
def test_an_input_the_model_does_not_take_is_one_line(models, args, needles):
    proc = check(models, "torch_model", "nnx_model", *args)
    assert_one_line_error(proc, "the torch model fails on the", "check --input/--dtype", *needles)


@pytest.mark.parametrize(
    "name,needles",
    [
        ("Argmax", ["output 0 of the torch model is int64", "floating point"]),
        ("Silent", ["returns no tensor (NoneType)"]),
    ],
)
def test_a_model_whose_outputs_cannot_be_checked_is_named(models, name, needles):
    assert_one_line_error(check(models, name, "nnx_model", "--input", "2,16"), *needles)


@pytest.mark.parametrize(
    "factory,side,needles",
    [
        ("exits", "torch", ["the factory", ":exits called sys.exit(3)", "must not end the program"]),
        ("exits", "jax", [":exits called sys.exit(3)"]),
        ("interrupts", "torch", [":interrupts raised KeyboardInterrupt itself (no Ctrl-C was pressed)"]),
    ],
)
def test_user_code_that_exits_or_interrupts_is_one_line_not_its_exit(models, factory, side, needles):
    names = (factory, "nnx_model") if side == "torch" else ("torch_model", factory)
    proc = check(models, *names, "--input", "2,16")
    assert_one_line_error(proc, *needles)


def test_a_file_that_exits_while_importing_is_one_line(tmp_path):
    path = tmp_path / "quits.py"
    path.write_text("import sys\nsys.exit('no models here')\n")
    proc = run_cli("port", "check", f"{path}:a", f"{path}:b", "--input", "2,16")
    assert_one_line_error(proc, f"{path} (while importing) called sys.exit('no models here')")
    proc = run_cli("port", "check", f"{path}:a", f"{path}:b", "--input", "2,16")  # no half-imported module kept
    assert_one_line_error(proc, "sys.exit('no models here')")


def test_a_real_ctrl_c_during_the_factory_still_interrupts(models):
    # Python's own SIGINT handling, as in a terminal (a pytest-xdist worker has another handler), for this
    # test only; an interrupt that escaped diptych would fail the test, not stop the runner.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = check(models, "ctrl_c", "nnx_model", "--input", "2,16")
    except KeyboardInterrupt:
        pytest.fail("the Ctrl-C escaped diptych's handling")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert proc.returncode == 130 and "interrupted" in proc.stderr, (proc.returncode, proc.stderr)


@pytest.mark.parametrize("name,needle", [("Silent", "returns NoneType"), ("Argmax", "returns a torch.int64 tensor")])
def test_port_export_of_a_model_without_a_float_output_is_one_line(models, name, needle, tmp_path):
    proc = run_cli("port", "export", models(name), str(tmp_path / "m.onnx"), "--input", "2,16")
    assert_one_line_error(proc, needle, "export needs a model that returns a float tensor")
    assert not list(tmp_path.iterdir())

"""`diptych port check` / `diptych port convert` as a user runs them: exit codes 0, 1, 2 and the JSON keys."""

import json
from pathlib import Path

import pytest

from conftest import run_cli

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "port"

pytest.importorskip("torch")
pytest.importorskip("flax")

T = f"{EXAMPLES / 'transformer.py'}:torch_model"
J = f"{EXAMPLES / 'transformer.py'}:nnx_model"


def test_check_agrees_exit_0_with_json(tmp_path):
    r = run_cli("port", "check", T, J, "--input", "2,5,16", "--steps", "1", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["ok"] and out["first_divergence"] is None
    assert out["mapping"]["self_attn"] == "self_attn"
    assert out["outputs_max_abs"] <= 1e-5 and out["worst_gradient"]["max_rel"] <= 1e-4


def test_check_wrong_port_exit_1_names_layer(tmp_path):
    f = tmp_path / "wrong.py"
    f.write_text(
        f"import sys; sys.path.insert(0, {str(EXAMPLES)!r})\nimport transformer\n"
        "def nnx_model(rngs):\n    return transformer.nnx_model(rngs, approximate_gelu=True)\n"
    )
    r = run_cli("port", "check", T, f"{f}:nnx_model", "--input", "2,5,16")
    assert r.returncode == 1, r.stderr
    assert "first divergence: activation" in r.stdout and "GELU" in r.stdout


@pytest.mark.parametrize(
    "args,msg",
    [
        (["nope.py:f", J, "--input", "2,5,16"], "no such file"),
        ([f"{EXAMPLES / 'transformer.py'}:missing", J, "--input", "2,5,16"], "no factory 'missing'"),
        ([T, J, "--input", "2,x"], "comma-separated"),
    ],
)
def test_check_bad_input_exit_2(args, msg):
    r = run_cli("port", "check", *args)
    assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_convert_pt_to_msgpack_and_back_bit_exact(tmp_path):
    import torch
    import transformer

    torch.save(transformer.torch_model().state_dict(), tmp_path / "w.pt")
    r = run_cli(
        "port",
        "convert",
        str(tmp_path / "w.pt"),
        str(tmp_path / "w.msgpack"),
        "--torch",
        T,
        "--jax",
        J,
        "--input",
        "2,5,16",
    )
    assert r.returncode == 0, r.stderr
    assert "bit-exact" in r.stdout
    r = run_cli(
        "port",
        "convert",
        str(tmp_path / "w.msgpack"),
        str(tmp_path / "back.pt"),
        "--torch",
        T,
        "--jax",
        J,
        "--no-check",
    )
    assert r.returncode == 0, r.stderr
    a, b = torch.load(tmp_path / "w.pt"), torch.load(tmp_path / "back.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)

"""`diptych port translate` on every model it promises (the full tier: each check compiles for seconds).

* every model of examples/port, the four hand-written ports and the five torch-only published-style ones:
  the check passes in training mode with 10 SGD steps, the file is ruff-clean and written twice alike;
* the torch twin of each of diptych's own model families: the check passes, and the translated NNX model
  with the canonical weights gives the hand-written JAX twin's logits to 1e-5;
* the same bytes from two processes with different hash seeds; ``--jax-layout`` (channels-last in and out).
"""

import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli, run_cli_isolated

pytest.importorskip("torch")
pytest.importorskip("flax")

pytestmark = pytest.mark.full

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "port"
# name: (input shape, int64 ids below this vocabulary or None for floats)
MODELS = {
    "resnet": ((4, 3, 8, 8), None),
    "transformer": ((2, 6, 16), None),
    "unet": ((2, 1, 8, 8), None),
    "tagger": ((3, 7), 20),
    "torchvision_resnet": ((4, 3, 64, 64), None),
    "vit": ((2, 3, 16, 16), None),
    "nanogpt": ((2, 16), 65),
    "mixer": ((2, 3, 16, 16), None),
    "audio_cnn": ((4, 1, 400), None),
}
FAMILIES = [
    "mnist-mlp",
    "mnist-cnn",
    "mnist1d-cnn",
    "mnist1d-rnn",
    "mnist1d-gru",
    "mnist-rnn",
    "chars-lstm",
    "fsdd-crnn",
    "chars-gpt",
    "mnist-vit",
]


def ruff_check(path: Path) -> subprocess.CompletedProcess:
    """``ruff check`` with ruff's defaults and with the project's families of rules (as test_translate.py)."""
    pytest.importorskip("ruff")
    cmd = [sys.executable, "-m", "ruff", "check", "--isolated", "--no-cache", "--select", "E,F,W,B,UP"]
    return subprocess.run([*cmd, "--line-length", "120", str(path)], capture_output=True, text=True)


def _input(shape, vocab):
    rng = np.random.default_rng(0)
    return rng.integers(0, vocab, shape).astype(np.int64) if vocab else rng.standard_normal(shape).astype(np.float32)


def _worst(report) -> str:
    outs = max(r.max_abs for r in report.rows if r.check == "outputs")
    rel = max(r.max_rel for r in report.rows if r.check != "outputs")
    return f"outputs max abs {outs:.1e}, worst other relative {rel:.1e}"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_example_translates_and_passes_10_training_steps(name, tmp_path):
    from diptych.port import translate

    shape, vocab = MODELS[name]
    factory = importlib.import_module(name).torch_model
    x = _input(shape, vocab)
    tr = translate(factory, [x], train=True, steps=10)
    assert tr.ok, tr.report.worst()
    assert tr.report.first_divergence is None
    print(f"{name}: {_worst(tr.report)}")
    assert translate(factory, [x], check=False).source == tr.source  # the same bytes again
    out = tmp_path / f"{name}_nnx.py"
    tr.write(out)
    assert ruff_check(out).returncode == 0, ruff_check(out).stdout


@pytest.mark.parametrize("task", FAMILIES)
def test_family_translates_and_matches_the_hand_written_jax_twin(task):
    import jax.numpy as jnp

    from diptych.backends import load_backend
    from diptych.port import translate
    from diptych.tasks import TASKS

    tb, jb = load_backend("torch"), load_backend("jax")
    spec = TASKS[task].model
    if spec.kind in ("charlm", "gpt"):
        spec = spec.with_vocab(30)
        x = _input((2, 16), 30)
    else:
        x = _input((3, *spec.input_shape()), None)
    torch_model = tb.models.build_model(spec, 0)
    tr = translate(lambda: tb.models.MODELS[spec.kind](spec), [x], train=True, steps=10)
    assert tr.ok, tr.report.worst()
    print(f"{task}: {_worst(tr.report)}")
    # the translated model, loaded with the canonical weights, against diptych's own JAX twin
    from diptych.port._convert import convert

    params = tb.weights.export(torch_model)
    convert(torch_model, tr.model, inputs=[x], jax_layout="same", flatten="same")
    twin = jb.models.build_model(spec, 0)
    jb.weights.load(twin, params)
    a, b = twin(jnp.asarray(x)), tr.model(jnp.asarray(x))
    a, b = (a[0] if isinstance(a, tuple) else a), (b[0] if isinstance(b, tuple) else b)
    assert float(jnp.max(jnp.abs(a - b))) <= 1e-5


def test_two_processes_with_different_hash_seeds_write_the_same_bytes(tmp_path):
    spec = f"{EXAMPLES / 'vit.py'}:torch_model"
    outs = []
    for seed in ("1", "2"):
        out = tmp_path / f"vit_{seed}.py"
        r = run_cli_isolated(
            "port",
            "translate",
            spec,
            "--input",
            "2,3,16,16",
            "--no-check",
            "--out",
            str(out),
            env={"PYTHONHASHSEED": seed},
        )
        assert r.returncode == 0, r.stderr
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


@pytest.mark.parametrize("name", ["unet", "audio_cnn"])
def test_jax_layout_takes_channels_last_maps_and_passes(name, tmp_path):
    shape, _ = MODELS[name]
    out = tmp_path / f"{name}_nnx.py"
    r = run_cli(
        "port",
        "translate",
        f"{EXAMPLES / name}.py:torch_model",
        "--input",
        ",".join(map(str, shape)),
        "--jax-layout",
        "--train",
        "--steps",
        "2",
        "--out",
        str(out),
        "--json",
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["ok"]
    call = out.read_text().split("def nnx_model")[0].rsplit("def __call__", 1)[1]
    assert "jnp.moveaxis(x, 1, -1)" not in call  # channels-last from the start

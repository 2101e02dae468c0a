"""`diptych port translate` in the fast tier: a small CNN written, checked in training mode and converted by
name; the porting guide's own example written as the guide shows it, twice alike; a model using an operation
with no rule refused in one line, with nothing written. The rest (every model of examples/port, diptych's
own families against their hand-written JAX twins) is in test_translate_models.py, in the full tier."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli

pytest.importorskip("torch")
pytest.importorskip("flax")

ROOT = Path(__file__).resolve().parents[2]

SMALL_CNN = """
import torch
from torch import nn
from torch.nn import functional as F


class Block(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class Net(nn.Module):
    def __init__(self, width=4, classes=3):
        super().__init__()
        self.blocks = nn.Sequential(Block(2, width), Block(width, 2 * width, 2))
        self.fc = nn.Linear(2 * width * 3 * 3, classes)

    def forward(self, x):
        x = self.blocks(x)
        return self.fc(torch.flatten(x, 1))
"""


def ruff_check(path: Path) -> subprocess.CompletedProcess:
    """``ruff check`` with ruff's defaults, then with the project's families of rules (import order aside)."""
    pytest.importorskip("ruff")
    cmd = [sys.executable, "-m", "ruff", "check", "--isolated", "--no-cache"]
    first = subprocess.run([*cmd, str(path)], capture_output=True, text=True)
    if first.returncode:
        return first
    strict = ["--select", "E,F,W,B,UP", "--line-length", "120"]
    return subprocess.run([*cmd, *strict, str(path)], capture_output=True, text=True)


def test_small_cnn_translates_and_passes_the_training_check(tmp_path):
    src = tmp_path / "small.py"
    src.write_text(SMALL_CNN)
    out = tmp_path / "small_nnx.py"
    r = run_cli(
        "port", "translate", f"{src}:Net", "--input", "4,2,6,6", "--train", "--steps", "2", "--out", str(out), "--json"
    )
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["ok"] and res["classes"] == ["Block", "Net"] and res["out"] == str(out)
    check = res["check"]
    assert check["outputs_max_abs"] <= 1e-5 and check["first_divergence"] is None
    # the torch paths: port convert's automatic mapping paired every layer by name
    assert check["mapping"]["blocks.1.bn"] == "blocks.layers.1.bn" and check["mapping"]["fc"] == "fc"
    text = out.read_text()
    assert text.count("class Block(nnx.Module)") == 1  # one class for both instances
    assert "def __init__(self, cin, cout, stride=1, *, rngs: nnx.Rngs)" in text
    assert "strides=stride" in text and "nnx_layers.BatchNorm(cout, momentum=0.1" in text
    assert ruff_check(out).returncode == 0, ruff_check(out).stdout


def _guide_blocks() -> tuple[str, str]:
    """The porting guide's ``mymodel.py`` (its torch half) and the ``mymodel_nnx.py`` it shows translate writes."""
    text = (ROOT / "docs" / "porting.md").read_text()
    blocks = dict(re.findall(r"```python\n# (\w+\.py)\n(.*?)```", text, re.S))
    return blocks["mymodel.py"], blocks["mymodel_nnx.py"]


def test_the_guides_example_translates_to_what_the_guide_shows_twice_alike(tmp_path):
    from diptych.port import translate

    source, shown = _guide_blocks()
    (tmp_path / "mymodel.py").write_text(source)
    sys.path.insert(0, str(tmp_path))
    try:
        import mymodel
    finally:
        sys.path.remove(str(tmp_path))
    x = np.random.default_rng(0).standard_normal((4, 3, 16, 16)).astype(np.float32)
    first = translate(mymodel.Net, [x], check=False).source
    again = translate(mymodel.Net, [x], check=False).source
    assert first == again  # byte for byte
    body = first.split('"""', 2)[2].lstrip()  # the guide shows the file less its docstring
    assert body == shown, "docs/porting.md shows another translation than translate writes"
    out = tmp_path / "mymodel_nnx.py"
    out.write_text(first)
    assert ruff_check(out).returncode == 0


FFT = """import torch
from torch import nn


class Spectral(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(9, 4)

    def forward(self, x):
        spec = torch.fft.rfft(x).abs()
        return self.fc(spec)
"""


def test_an_operation_with_no_rule_is_one_line_exit_2_and_no_file(tmp_path):
    src = tmp_path / "spectral.py"
    src.write_text(FFT)
    out = tmp_path / "spectral_nnx.py"
    r = run_cli("port", "translate", f"{src}:Spectral", "--input", "2,16", "--out", str(out))
    assert r.returncode == 2
    line = r.stderr.strip()
    assert "\n" not in line and "Traceback" not in line, r.stderr
    assert "torch.fft.rfft" in line and "spectral.py:11: spec = torch.fft.rfft(x).abs()" in line
    assert line.endswith("no file written") and not out.exists() and not list(tmp_path.glob("*_nnx.py"))

"""Weights, checkpoints and the feature metadata inside weights are validated before they are
trusted: dtypes, shapes, finite values, and a schema for the metadata. Each problem is one line."""

from __future__ import annotations

import copy
import json
import struct

import numpy as np
import pytest
import torch
from safetensors.torch import save_file as torch_save_file

from conftest import assert_one_line_error, cli_in_process
from diptych import checkpoint
from diptych.cli import main
from diptych.data.audio import FSDD_FRONTEND
from diptych.data.audio_checks import check_features
from diptych.errors import DiptychError
from diptych.tasks import TASKS
from diptych.weights import read_safetensors, save_weights

TASK = "mnist1d-mlp"
SHAPES = TASKS[TASK].model.param_shapes()


def params(seed=0):
    rng = np.random.default_rng(seed)
    return {k: rng.normal(0, 0.1, s).astype(np.float32) for k, s in SHAPES.items()}


# ----------------------------------------------------------------------------- safetensors


def test_half_and_bfloat16_weights_are_converted_exactly(tmp_path):
    p = params()
    for name, dtype in (("bf16", torch.bfloat16), ("f16", torch.float16)):
        half = {k: torch.from_numpy(v).to(dtype) for k, v in p.items()}
        torch_save_file(half, tmp_path / f"{name}.safetensors")
        got, _ = read_safetensors(tmp_path / f"{name}.safetensors")
        for k, v in half.items():
            assert got[k].dtype == np.float32 and np.array_equal(got[k], v.float().numpy())


@pytest.mark.parametrize(
    "tensor,needle",
    [
        (torch.zeros(3, dtype=torch.float8_e4m3fn), "dtype F8_E4M3, which diptych does not read"),
        (torch.full((3,), 0.1, dtype=torch.float64), "float64 with values float32 cannot hold exactly"),
        (torch.zeros(3, dtype=torch.bool), "dtype BOOL"),
    ],
)
def test_other_dtypes_are_refused(tmp_path, tensor, needle):
    torch_save_file({"w": tensor}, tmp_path / "w.safetensors")
    with pytest.raises(DiptychError, match=needle):
        read_safetensors(tmp_path / "w.safetensors")


def _raw_file(header: dict, data: bytes) -> bytes:
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


@pytest.mark.parametrize(
    "raw,needle",
    [
        (struct.pack("<Q", 2**62) + b"{}", "header length 4,611,686,018,427,387,904 does not fit"),
        (
            _raw_file({"w": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 16]}}, bytes(16)),
            "does not match bytes 0-16",
        ),
        (_raw_file({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, bytes(8)), "does not match bytes"),
        (_raw_file({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, bytes(4)), "malformed shape"),
        (
            _raw_file(
                {"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "__metadata__": {"a": "{"}}, bytes(4)
            ),
            "metadata is not diptych's",
        ),
        (_raw_file([1, 2], b""), "not a JSON object"),
        (b"\x05\x00", "header length -1"),
        (struct.pack("<Q", 5) + b"[[[[[", "not a readable safetensors file"),
    ],
)
def test_malformed_headers_are_one_line(tmp_path, raw, needle):
    (tmp_path / "w.safetensors").write_bytes(raw)
    with pytest.raises(DiptychError, match=needle) as e:
        read_safetensors(tmp_path / "w.safetensors")
    assert "\n" not in str(e.value)


def _reoffset(raw: bytes, offsets: dict[str, list[int]], body: bytes | None = None) -> bytes:
    """The safetensors file ``raw`` with some tensors' ``data_offsets`` replaced (and the data section)."""
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    for name, o in offsets.items():
        header[name]["data_offsets"] = o
    return _raw_file(header, raw[8 + n :] if body is None else body)


def _ranges(raw: bytes) -> dict[str, list[int]]:
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    return {k: v["data_offsets"] for k, v in header.items() if k != "__metadata__"}


@pytest.mark.parametrize("case", ["overlap", "same bytes", "gap", "tail"])
def test_tensor_byte_ranges_must_tile_the_data_section(tmp_path, case, capsys):
    """One tensor read from another's bytes loaded silently, and eval exited 0 with it: the byte ranges must
    tile the data section (no overlap, no gap, nothing after the last), as safetensors itself requires."""
    w = {"a": np.arange(4, dtype=np.float32), "b": np.arange(4, 8, dtype=np.float32)}
    save_weights(w, tmp_path / "ok.safetensors", task=TASK)
    raw = (tmp_path / "ok.safetensors").read_bytes()
    (a0, a1), (b0, b1) = _ranges(raw)["a"], _ranges(raw)["b"]
    body = raw[8 + int.from_bytes(raw[:8], "little") :]
    bad = {
        "overlap": _reoffset(raw, {"b": [b0 - 4, b1 - 4]}),  # b's first value is a's last; 4 bytes owned by none
        "same bytes": _reoffset(raw, {"b": [a0, a1]}),  # b read from a's bytes
        "gap": _reoffset(raw, {"b": [b0 + 4, b1 + 4]}, body + bytes(4)),
        "tail": _reoffset(raw, {}, body + bytes(8)),
    }[case]
    (tmp_path / "bad.safetensors").write_bytes(bad)
    with pytest.raises(DiptychError, match="overlaps|belong to no tensor") as e:
        read_safetensors(tmp_path / "bad.safetensors")
    assert "\n" not in str(e.value)
    got, _ = read_safetensors(tmp_path / "ok.safetensors")  # the untouched file still loads
    assert all(np.array_equal(got[k], w[k]) for k in w)
    swapped = _reoffset(raw, {"a": [b0, b1], "b": [a0, a1]})  # any order of the ranges is fine
    (tmp_path / "swapped.safetensors").write_bytes(swapped)
    got, _ = read_safetensors(tmp_path / "swapped.safetensors")
    assert np.array_equal(got["a"], w["b"]) and np.array_equal(got["b"], w["a"])


def test_eval_refuses_weights_whose_tensors_share_bytes(tmp_path):
    p = params()
    save_weights(p, tmp_path / "w.safetensors", task=TASK)
    raw = (tmp_path / "w.safetensors").read_bytes()
    ranges = _ranges(raw)
    same = [(x, y) for x in ranges for y in ranges if x < y and np.diff(ranges[x]) == np.diff(ranges[y])]
    x, y = same[0]  # two tensors of one size (e.g. two biases): one read from the other's bytes
    (tmp_path / "w.safetensors").write_bytes(_reoffset(raw, {y: ranges[x]}))
    proc = cli_in_process("eval", TASK, "--framework", "torch", "--weights", str(tmp_path / "w.safetensors"))
    assert_one_line_error(proc, "overlaps", "read from the other's bytes")


def test_eval_of_nan_weights_is_refused(tmp_path, capsys):
    p = params()
    p["fc1.weight"][:] = np.nan
    save_weights(p, tmp_path / "nan.safetensors", task=TASK)
    assert main(["eval", TASK, "--framework", "torch", "--weights", str(tmp_path / "nan.safetensors")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tensor 'fc1.weight' holds NaN or infinite values" in err[0], err


# ----------------------------------------------------------------------------- checkpoints


def good_checkpoint(optimizer="adam"):
    p = params()
    moments = {"adam": ("exp_avg", "exp_avg_sq"), "momentum": ("momentum_buffer",), "sgd": ()}[optimizer]
    opt = {"step": np.asarray(40, np.int64)}
    opt |= {f"{m}.{k}": np.full_like(v, 1e-3) for m in moments for k, v in p.items()}
    config = {
        "epochs": 3,
        "batch_size": 100,
        "lr": 1e-3,
        "optimizer": optimizer,
        "schedule": "constant",
        "warmup_fraction": 0.0,
        "seed": 0,
        "compile": False,
        "precision": "fp32",
        "split": None,
    }
    meta = {
        "task": TASK,
        "framework": "torch",
        "epoch": 1,
        "config": config,
        "epochs": [{"epoch": 1, "train_loss": 1.2, "test_accuracy": 0.5, "train_seconds": 1.0, "wall_seconds": 1.5}],
        "wall_seconds": 1.5,
        "compile_seconds": 0.2,
        "steady_samples": 3900,
        "steady_seconds": 1.0,
        "loss_curve": [[20, 1.5], [40, 1.2]],
    }
    return p, opt, meta


@pytest.mark.parametrize("optimizer", ["adam", "momentum", "sgd"])
def test_a_good_checkpoint_loads(tmp_path, optimizer):
    p, opt, meta = good_checkpoint(optimizer)
    checkpoint.save(tmp_path / "c.safetensors", p, opt, **meta)
    got_p, got_opt, got_meta = checkpoint.load(tmp_path / "c.safetensors", TASK)
    assert set(got_p) == set(p) and set(got_opt) == set(opt) and got_meta["epoch"] == 1


def _drop(d, key):
    d.pop(key)


MUTATIONS = {
    "missing epoch": (lambda p, o, m: _drop(m, "epoch"), "epoch is None"),
    "epoch as text": (lambda p, o, m: m.update(epoch="1"), "epoch is '1'"),
    "missing config": (lambda p, o, m: _drop(m, "config"), "no run config"),
    "config without lr": (lambda p, o, m: _drop(m["config"], "lr"), "config lr is 'missing'"),
    "unknown optimizer": (lambda p, o, m: m["config"].update(optimizer="lion"), "config optimizer is 'lion'"),
    "missing wall_seconds": (lambda p, o, m: _drop(m, "wall_seconds"), "wall_seconds is 'missing'"),
    "negative wall_seconds": (lambda p, o, m: m.update(wall_seconds=-1), "wall_seconds is -1"),
    "history too short": (lambda p, o, m: m.update(epochs=[]), "do not describe 1 finished epochs"),
    "missing step": (lambda p, o, m: _drop(o, "step"), "the optimizer step is missing"),
    "NaN step": (lambda p, o, m: o.update(step=np.asarray(np.nan, np.float32)), r"the optimizer step is \[nan\]"),
    "fractional step": (lambda p, o, m: o.update(step=np.asarray(2.5, np.float32)), "not a whole number"),
    "missing moments": (
        lambda p, o, m: [o.pop(k) for k in list(o) if k.startswith("exp_avg_sq.")],
        "its adam state lacks 'exp_avg_sq.fc1.bias'.*silently restart",
    ),
    "moment of the wrong shape": (
        lambda p, o, m: o.update({"exp_avg.fc1.weight": np.zeros((3, 3), np.float32)}),
        r"'exp_avg.fc1.weight' is float32 \(3, 3\), expected float32 \(100, 40\)",
    ),
    "NaN moment": (lambda p, o, m: o["exp_avg.fc2.bias"].fill(np.nan), "with NaN/inf"),
    "NaN weights": (lambda p, o, m: p["fc3.weight"].fill(np.nan), "'fc3.weight' holds NaN"),
    "wrong weight shape": (lambda p, o, m: p.update({"fc1.weight": np.zeros((2, 2), np.float32)}), "shape"),
}


@pytest.mark.parametrize("case", list(MUTATIONS))
def test_damaged_checkpoints_are_refused_in_one_line(tmp_path, case):
    p, opt, meta = copy.deepcopy(good_checkpoint())
    mutate, needle = MUTATIONS[case]
    mutate(p, opt, meta)
    checkpoint.save(tmp_path / "c.safetensors", p, opt, **meta)
    with pytest.raises(DiptychError, match=needle) as e:
        checkpoint.load(tmp_path / "c.safetensors", TASK)
    assert "\n" not in str(e.value) and "c.safetensors" in str(e.value)


# ----------------------------------------------------------------------------- audio feature metadata


def good_features():
    m = FSDD_FRONTEND.n_mels
    return {
        "frontend": dict(FSDD_FRONTEND.__dict__),
        "split": "official",
        "mean": [-10.0] * m,
        "std": [2.0] * m,
        "silence": [-1.0] * m,
        "noise_shape": [1.0] * m,
        "noise_bins": [4.0] * m,
        "floor": [1e-6] * m,
    }


def _fe(**kw):
    def mutate(f):
        f["frontend"].update(kw)

    return mutate


FEATURE_MUTATIONS = {
    "zero std": (lambda f: f.update(std=[0.0] * 32), "std that is not positive"),
    "zero n_fft": (_fe(n_fft=0), "impossible n_fft"),
    "huge frames": (_fe(frames=10**9), "impossible frames"),
    "frames for another model": (_fe(frames=128), r"describes 32x128 log-mel images, the model takes \(32, 64\)"),
    "n_fft as text": (_fe(n_fft="256"), "n_fft = '256', not an integer"),
    "unknown key": (_fe(window="hamming"), "unknown setting 'window'"),
    "trim as a number": (_fe(trim=1), "trim = 1, not true or false"),
    "cepstra as a flag": (_fe(cepstra=True), "cepstra = True, not an integer"),
    "missing key": (lambda f: f["frontend"].pop("hop"), "no setting 'hop'"),
    "missing statistic": (lambda f: f.pop("mean"), "no 32 finite values of 'mean'"),
    "NaN statistic": (lambda f: f["mean"].__setitem__(3, float("nan")), "finite values of 'mean'"),
    "not a dict": (lambda f: f.update(frontend=[1, 2]), "no front-end settings"),
}


@pytest.mark.parametrize("case", list(FEATURE_MUTATIONS))
def test_feature_metadata_is_checked(case):
    f = good_features()
    mutate, needle = FEATURE_MUTATIONS[case]
    mutate(f)
    with pytest.raises(DiptychError, match=needle):
        check_features(f, "w.safetensors", TASKS["fsdd-cnn"].model.input_shape())


def test_transcribe_refuses_zero_std_instead_of_printing_nan(tmp_path, capsys):
    from audio_helpers import write_wav

    rng = np.random.default_rng(0)
    p = {k: rng.normal(0, 0.05, s).astype(np.float32) for k, s in TASKS["fsdd-cnn"].model.param_shapes().items()}
    features = good_features()
    check_features(features, "w", TASKS["fsdd-cnn"].model.input_shape())  # the good one passes
    features["std"] = [0.0] * 32
    save_weights(p, tmp_path / "w.safetensors", task="fsdd-cnn", features=features)
    wav = write_wav(tmp_path / "a.wav", 0.3 * np.sin(np.arange(4000) / 3.0))
    assert main(["transcribe", "fsdd-cnn", "--weights", str(tmp_path / "w.safetensors"), str(wav)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "std that is not positive" in err[0], err

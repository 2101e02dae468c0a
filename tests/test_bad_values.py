"""Out-of-range values on the command line, damaged run records, a --data-dir that does not exist and
a corpus with too many characters: each is one line and exit code 2 (in-process, no subprocess)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from diptych.cli import main
from diptych.commands.generate import sample
from diptych.data import load_dataset
from diptych.data.text import MAX_VOCAB, load_text
from diptych.errors import DataError


def one_line(capsys, argv, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("diptych: error: "), err
    for n in needles:
        assert n in err[0], err[0]
    return err[0]


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["train", "mnist1d-mlp", "--framework", "torch", "--seed", "-1"], "--seed"),
        (["train", "mnist1d-mlp", "--framework", "torch", "--seed", str(2**64)], "--seed"),
        (["train", "mnist1d-mlp", "--framework", "torch", "--seed", str(2**63)], "0<=x<=9223372036854775807"),
        (["train", "mnist1d-mlp", "--framework", "torch", "--lr", "nan"], "--lr"),
        (["train", "mnist1d-mlp", "--framework", "torch", "--lr", "inf"], "inf is not a finite number"),
        (["train", "mnist1d-mlp", "--framework", "torch", "--epochs", str(10**12)], "--epochs"),
        (["compare", "mnist1d-mlp", "--seed", "-5"], "--seed"),
        (["parity", "mnist1d-mlp", "--seed", "-1"], "--seed"),
        (
            ["generate", "chars-lstm", "--weights", "w.safetensors", "--temperature", "nan"],
            "nan is not a finite number",
        ),
        (["generate", "chars-lstm", "--weights", "w.safetensors", "--temperature", "-1"], "--temperature"),
        (["generate", "chars-lstm", "--weights", "w.safetensors", "--seed", "-1"], "--seed"),
        (["bench", "mnist1d-mlp", "--burst", "nan"], "--burst"),
    ],
)
def test_values_out_of_range(capsys, argv, needle):
    one_line(capsys, argv, needle)


def test_a_tiny_temperature_is_greedy_not_nan():
    logits = np.array([1.0, 3.0, 2.0], np.float32)
    assert sample(logits, 1e-320, np.random.default_rng(0)) == 1


RUN = {
    "task": "mnist1d-mlp",
    "framework": "torch",
    "test_accuracy": 0.7,
    "wall_seconds": 3.0,
    "compile_seconds": 0.1,
    "samples_per_second": 1e4,
    "peak_rss_mb": 300.0,
    "epochs": [{"epoch": 1, "test_accuracy": 0.7, "wall_seconds": 3.0}],
}


@pytest.mark.parametrize(
    "damage,needle",
    [
        (lambda r: r.pop("samples_per_second"), "samples_per_second is 'missing'"),
        (lambda r: r.update(compile_seconds="fast"), "compile_seconds is 'fast', not a number"),
        (lambda r: r.update(epochs=[{}]), "its epochs are not a list"),
        (lambda r: r.pop("framework"), "framework is 'missing'"),
    ],
)
def test_report_on_a_record_with_missing_keys(tmp_path, capsys, damage, needle):
    run = json.loads(json.dumps(RUN))
    damage(run)
    (tmp_path / "r" / "torch").mkdir(parents=True)
    (tmp_path / "r" / "torch" / "run.json").write_text(json.dumps(run))
    one_line(
        capsys,
        ["report", str(tmp_path / "r"), "--out", str(tmp_path / "out")],
        "run.json is not a complete diptych record",
        needle,
    )
    assert not (tmp_path / "out").exists()


def test_report_on_a_damaged_bench_record(tmp_path, capsys):
    (tmp_path / "bench.json").write_text(
        json.dumps({"task": "mnist1d-mlp", "bursts": {"torch": [{}]}, "runs": {}, "machine": {}})
    )
    one_line(capsys, ["report", str(tmp_path), "--out", str(tmp_path / "out")], "the bursts of 'torch' are incomplete")


@pytest.mark.parametrize("dataset", ["mnist", "mnist1d", "fsdd"])
def test_a_named_data_dir_must_exist(tmp_path, dataset):
    with pytest.raises(DataError, match=f"--data-dir {tmp_path / 'typo'} does not exist"):
        load_dataset(dataset, tmp_path / "typo")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="is a file, not a folder"):
        load_dataset(dataset, tmp_path / "file")


def test_a_corpus_with_too_many_characters_is_refused(tmp_path):
    (tmp_path / "t.txt").write_text("".join(chr(0x4E00 + i) for i in range(MAX_VOCAB + 1)))
    with pytest.raises(DataError, match=f"t.txt has {MAX_VOCAB + 1:,} distinct characters, more than the"):
        load_text(tmp_path / "t.txt")

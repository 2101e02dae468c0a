"""``--set KEY=VALUE``: the model's size is the user's, in every kind of task. A bad key, value or model is one
line naming the valid keys; the overrides travel in run.json and the weights, so eval, generate and convert
rebuild the very model from the weights alone; a resumed run refuses another model."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_one_line_error, run_cli
from diptych.errors import DiptychError
from diptych.formats import read_any
from diptych.overrides import apply_overrides, keys, spec_from_dict, spec_to_dict
from diptych.specs import _Spec
from diptych.tasks import TASKS, get_task
from diptych.weights import read_safetensors, save_weights

ROOT = Path(__file__).resolve().parents[1]


def _train(task: str, framework: str, out: Path, *args: str) -> dict:
    proc = run_cli("train", task, "--framework", framework, "--out", str(out), "--json", "--no-progress", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _eval(task: str, framework: str, weights: Path, *args: str) -> dict:
    proc = run_cli("eval", task, "--framework", framework, "--weights", str(weights), "--json", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


# ----------------------------------------------------------------------------- keys, values, one-line errors


@pytest.mark.parametrize(
    "task,sets,needles",
    [
        ("mnist1d-mlp", ["layers=6"], ["--set layers=6", "no key 'layers'", "its keys: hidden"]),
        ("mnist1d-mlp", ["hidden=abc"], ["hidden takes whole numbers", "keys of an MLP: hidden"]),
        ("mnist1d-mlp", ["hidden=0"], ["hidden takes whole numbers >= 1"]),
        ("mnist1d-mlp", ["hidden"], ["write KEY=VALUE"]),
        ("mnist1d-mlp", ["num_classes=3"], ["num_classes of an MLP is fixed", "the data decides it", "keys: hidden"]),
        ("mnist1d-mlp", ["hidden=100000,100000"], ["parameters is more than a weights file holds"]),
        ("mnist1d-gru", ["cell=tcn"], ["cell takes one of rnn, lstm, gru", "num_layers"]),
        ("mnist1d-gru", ["bidirectional=maybe"], ["bidirectional takes true or false"]),
        ("mnist1d-gru", ["input_size=4"], ["its input is (160,), the task's data is (40,)"]),
        ("mnist1d-gru", ["num_layers=2000000000"], ["num_layers must be at most 1024"]),
        ("mnist-cnn", ["channels=8,8,8,8,8"], ["conv5 shrinks the 28x28 input to nothing"]),
        ("mnist-cnn", ["convs=3"], ["convs of a CNN is fixed", "channels=A,B", "keys: channels, hidden"]),
        ("chars-lstm", ["vocab=20"], ["vocab of a character LM is fixed", "the corpus decides it"]),
        ("fsdd-crnn", ["in_size=16"], ["in_size of a CRNN is fixed", "keys: channels, cell, hidden"]),
        ("chars-gpt", ["heads=3"], ["heads=3 does not divide width=128"]),
        ("mnist-vit", ["patch=29"], ["patch=29 must be between 1 and the image side, 28"]),
    ],
)
def test_a_bad_set_is_one_line_naming_the_keys(task, sets, needles, tmp_path):
    args = [a for s in sets for a in ("--set", s)]
    proc = run_cli("train", task, "--framework", "torch", "--out", str(tmp_path / "r"), *args)
    assert_one_line_error(proc, *needles)
    assert not (tmp_path / "r" / "run.json").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["compare", "mnist1d-mlp", "--set", "width=3"],
        ["parity", "mnist1d-mlp", "--steps", "1", "--set", "width=3"],
        ["bench", "mnist1d-mlp", "--repeats", "1", "--set", "width=3"],
    ],
)
def test_every_model_building_command_takes_set(args, tmp_path):
    proc = run_cli(*args, "--out", str(tmp_path / "o")) if args[0] != "parity" else run_cli(*args)
    assert_one_line_error(proc, "--set width=3", "its keys: hidden")


def test_overrides_change_the_model_of_every_kind():
    changed = {
        "mlp": ("mnist1d-mlp", {"hidden": "64,32,16"}, "MLP 40-64-32-16-10"),
        "cnn": ("mnist1d-cnn", {"channels": "8,16", "hidden": "32"}, "CNN1d conv5(8) conv3(16) fc(32, 10)"),
        "rnn": ("mnist1d-gru", {"cell": "lstm", "input_size": "4", "seq_len": "10", "num_layers": "2"}, "LSTM 2x128"),
        "charlm": ("chars-lstm", {"hidden": "64", "seq_len": "32"}, "char LSTM 1x64, embed 64, vocab V, TBPTT 32"),
        "crnn": ("fsdd-crnn", {"channels": "8,16,32", "bidirectional": "true"}, "conv3(32)/pool2 -> biGRU"),
        "gpt": ("chars-gpt", {"layers": "6", "width": "256", "context": "128"}, "GPT 6x256, 4 heads, context 128"),
        "vit": ("mnist-vit", {"patch": "7", "layers": "2", "heads": "2"}, "ViT patch 7 (16 patches) 2x64, 2 heads"),
    }
    assert set(changed) == {t.model.kind for t in TASKS.values()}, "a new kind of model: add it here"
    for task, sets, want in changed.values():
        spec = apply_overrides(get_task(task).model, sets)
        assert want in spec.describe() and spec.num_params() != get_task(task).model.num_params()


def test_the_mechanism_is_generic_over_spec_fields():
    """A new spec gets its keys from its fields and types; ``fixed`` and ``problem()`` are its own."""

    @dataclasses.dataclass(frozen=True)
    class TinyGPT(_Spec):
        layers: int = 4
        heads: int = 4
        width: int = 128
        context: int = 64
        mlp_ratio: float = 4.0
        bias: bool = True
        vocab: int = 0
        kind: str = "tinygpt"

        def problem(self):
            return f"heads ({self.heads}) must divide width ({self.width})" if self.width % self.heads else None

        def input_shape(self):
            return (self.context,)

        def num_params(self):
            return self.layers * 12 * self.width**2

    spec = TinyGPT()
    assert list(keys(spec)) == ["layers", "heads", "width", "context", "mlp_ratio", "bias"]
    new = apply_overrides(spec, {"layers": "6", "width": "256", "context": "128", "mlp_ratio": "2.5", "bias": "no"})
    assert (new.layers, new.width, new.context, new.mlp_ratio, new.bias) == (6, 256, 128, 2.5, False)
    with pytest.raises(DiptychError, match=r"heads \(3\) must divide width \(128\)"):
        apply_overrides(spec, {"heads": "3"})
    with pytest.raises(DiptychError, match="vocab of a TINYGPT is fixed: the corpus decides it"):
        apply_overrides(spec, {"vocab": "9"})
    with pytest.raises(DiptychError, match="mlp_ratio takes a finite number"):
        apply_overrides(spec, {"mlp_ratio": "nan"})


def test_every_task_model_round_trips_through_metadata():
    for task in TASKS.values():
        spec = task.objective.sized(task).model
        assert spec_from_dict(json.loads(json.dumps(spec_to_dict(spec))), "w") == spec, task.name


@pytest.mark.parametrize(
    "model,needle",
    [
        ({"kind": "resnet"}, "names no model diptych builds"),
        ({"kind": "mlp", "in_features": 40}, "lacks the field 'hidden'"),
        ({"kind": "mlp", "in_features": 40, "hidden": ["a"]}, "where int belongs"),
        ({"kind": "mlp", "in_features": 40, "hidden": [100], "depth": 3}, "unknown field 'depth'"),
        ({"kind": "rnn", "cell": "tcn", "input_size": 1, "seq_len": 40, "hidden": 8}, "cell must be one of"),
        ({"kind": "cnn", "dims": 1, "in_size": 40, "convs": [{"out_channels": 4, "kernel": 0}]}, "kernel, stride"),
        ({"kind": "cnn", "dims": 2**31 - 1, "in_size": 9, "convs": []}, "is not a 2147483647-D image"),
        ({"kind": "rnn", "cell": "gru", "input_size": 1, "seq_len": 40, "hidden": 8, "num_layers": 2**31 - 1}, "1024"),
    ],
)
def test_a_weights_file_with_a_foreign_model_is_one_line(model, needle, tmp_path):
    params, _ = _mlp_weights(tmp_path)
    save_weights(params, tmp_path / "bad.safetensors", task="mnist1d-mlp", framework="torch", model=model)
    proc = run_cli("eval", "mnist1d-mlp", "--framework", "torch", "--weights", str(tmp_path / "bad.safetensors"))
    assert_one_line_error(proc, "metadata 'model'", needle)


def _mlp_weights(tmp_path):
    spec = get_task("mnist1d-mlp").model
    return {k: np.zeros(s, np.float32) for k, s in spec.param_shapes().items()}, spec


def test_weights_for_other_data_are_refused(tmp_path):
    params, spec = _mlp_weights(tmp_path)
    save_weights(params, tmp_path / "w.safetensors", task="mnist1d-mlp", model=spec_to_dict(spec))
    proc = run_cli("eval", "mnist-mlp", "--framework", "torch", "--weights", str(tmp_path / "w.safetensors"))
    assert_one_line_error(proc, "holds a model for other data than mnist-mlp's", "in_features is 40")


def test_the_keys_table_in_the_docs_is_current():
    """docs/running.md's table is `diptych list --keys`; after a change to a spec, paste the output there."""
    page = (ROOT / "docs" / "running.md").read_text()
    block = re.search(r"<!-- begin: diptych list --keys -->\n(.*?)\n<!-- end: diptych list --keys -->", page, re.S)
    assert block, "docs/running.md lost its markers"
    proc = run_cli("list", "--keys")
    assert proc.returncode == 0 and block.group(1) == proc.stdout.strip(), "docs/running.md's keys are stale"


# ----------------------------------------------------------------------------- train, then rebuild from the weights


KINDS = {  # task: (--set, epochs); one task of each kind of model, trained by torch in seconds
    "mnist1d-mlp": (["hidden=32,16"], "0.5"),
    "mnist1d-cnn": (["channels=8,16", "hidden=24"], "0.5"),
    "mnist1d-gru": (["cell=lstm", "input_size=4", "seq_len=10", "hidden=24", "num_layers=2"], "0.5"),
    "chars-lstm": (["hidden=40", "embed=12", "seq_len=24", "cell=gru"], "0.01"),
    "chars-gpt": (["layers=1", "width=32", "heads=2", "context=16", "mlp_ratio=2"], "0.01"),
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``get(task)`` -> ``(run.json record, run folder)`` of a short torch run with the task's ``--set``."""
    runs = {}

    def get(task: str):
        if task not in runs:
            sets, epochs = KINDS[task]
            out = tmp_path_factory.mktemp(task)
            runs[task] = _train(task, "torch", out, "--epochs", epochs, *[a for s in sets for a in ("--set", s)]), out
        return runs[task]

    return get


@pytest.mark.parametrize("task", list(KINDS))
def test_train_with_set_then_eval_from_the_weights_alone(task, trained):
    run, out = trained(task)
    sets = KINDS[task][0]
    want = get_task(task).with_model_overrides(dict(s.split("=") for s in sets)).model
    assert run["config"]["model_overrides"].keys() == {s.split("=")[0] for s in sets}
    assert spec_from_dict(run["model"], "run.json").with_vocab(0) == want
    weights = out / "weights.safetensors"
    _, spec, meta = read_any(weights)  # the model, from the weights alone
    assert spec.with_vocab(0) == want and spec.num_params() == run["num_params"] != get_task(task).model.num_params()
    assert spec_from_dict(meta["model"], str(weights)) == spec
    scores = _eval(task, "torch", weights)  # no --set: the weights say which model they are
    metric = "test_bpc" if "test_bpc" in run else "test_accuracy"
    assert scores[metric] == run[metric]


def test_the_other_twin_rebuilds_it_too(trained):
    run, out = trained("mnist1d-mlp")
    assert _eval("mnist1d-mlp", "jax", out / "weights.safetensors")["test_accuracy"] == pytest.approx(
        run["test_accuracy"], abs=2e-3
    )


def test_a_crnn_with_set(tmp_path):
    """fsdd-crnn's model with --set, on random log-mel-shaped data (the wav front end is not under test)."""
    from diptych import RunConfig, evaluate_weights, train_and_evaluate
    from diptych.data import Dataset

    rng = np.random.default_rng(0)
    shape = get_task("fsdd-crnn").model.input_shape()
    x, y = rng.standard_normal((96, *shape)).astype(np.float32), rng.integers(0, 10, 96).astype(np.int32)
    data = Dataset("fsdd", x[:64], y[:64], x[64:], y[64:])
    config = RunConfig("fsdd-crnn", "torch", epochs=1, progress=False, sets=("channels=4", "hidden=8", "cell=lstm"))
    run = train_and_evaluate(config, tmp_path, dataset=data)
    assert run["model"]["hidden"] == 8 and [c["out_channels"] for c in run["model"]["convs"]] == [4]
    scores = evaluate_weights("fsdd-crnn", "torch", tmp_path / "weights.safetensors", dataset=data)
    assert scores["test_accuracy"] == run["test_accuracy"]
    assert read_any(tmp_path / "weights.safetensors")[1].num_params() == run["num_params"]


def test_generate_rebuilds_the_model_from_the_weights(trained):
    _, out = trained("chars-lstm")
    args = ("--weights", str(out / "weights.safetensors"), "--length", "12", "--temperature", "0")
    proc = run_cli("generate", "chars-lstm", "--framework", "torch", *args)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.strip()) >= len("The ") + 12


def test_convert_keeps_the_model_and_native_files_take_task_and_set(trained, tmp_path):
    run, out = trained("mnist1d-mlp")
    src, sets = out / "weights.safetensors", ["--set", "hidden=32,16"]
    assert run_cli("convert", str(src), str(tmp_path / "copy.safetensors")).returncode == 0
    assert read_safetensors(tmp_path / "copy.safetensors")[1]["model"]["hidden"] == [32, 16]
    for native in ("w.pt", "w.msgpack"):
        assert run_cli("convert", str(src), str(tmp_path / native)).returncode == 0
        back = tmp_path / f"back-{native}.safetensors"
        refused = run_cli("convert", str(tmp_path / native), str(back))
        assert_one_line_error(refused, "match no diptych model" if native == "w.pt" else "not a Flax msgpack", "--set")
        proc = run_cli("convert", str(tmp_path / native), str(back), "--task", "mnist1d-mlp", *sets)
        assert proc.returncode == 0, proc.stderr
        assert _eval("mnist1d-mlp", "torch", back)["test_accuracy"] == run["test_accuracy"]
    init_from = ("--init-from", str(tmp_path / "w.pt"))
    init = _train("mnist1d-mlp", "torch", tmp_path / "init", "--epochs", "0.1", *init_from, *sets)
    assert init["num_params"] == run["num_params"]  # a native file as this run's model
    other = ["--task", "mnist1d-mlp", "--set", "hidden=8"]
    assert_one_line_error(run_cli("convert", str(tmp_path / "w.pt"), str(tmp_path / "x.pt"), *other), "match no")
    alone = run_cli("convert", str(src), str(tmp_path / "x.pt"), "--set", "hidden=8")
    assert_one_line_error(alone, "--set describes a task's model: pass --task")


def test_resume_keeps_the_overrides_and_refuses_others(tmp_path):
    first = _train("mnist1d-mlp", "torch", tmp_path, "--epochs", "1", "--set", "hidden=20")
    more = ("mnist1d-mlp", "--framework", "torch", "--out", str(tmp_path), "--resume", "--epochs", "2")
    changed = run_cli("train", *more, "--set", "hidden=21")
    assert_one_line_error(changed, "cannot change --set when resuming", "the run used --set hidden=20")
    same = _train("mnist1d-mlp", "torch", tmp_path, "--resume", "--epochs", "2", "--set", "hidden=20")
    assert same["num_params"] == first["num_params"] and len(same["epochs"]) == 2
    kept = _train("mnist1d-mlp", "torch", tmp_path, "--resume", "--epochs", "3")  # no --set: the run's own
    assert kept["config"]["model_overrides"] == {"hidden": [20]} and kept["num_params"] == first["num_params"]


def test_bench_counts_the_flops_of_the_model_that_ran():
    from diptych.bench.report import title
    from diptych.bench.summary import summarize

    burst = {"compile_seconds": 1.0, "train_samples_per_second": 100.0, "eval_samples_per_second": 1.0}
    bursts = {"torch": [burst | {"framework": "torch", "peak_rss_mb": 1.0}]}
    base, small = summarize("mnist1d-mlp", bursts, {}), summarize("mnist1d-mlp", bursts, {}, {"hidden": [32]})
    assert small["train_flops_per_sample"] < base["train_flops_per_sample"]
    assert (title(base), title(small)) == ("mnist1d-mlp", "mnist1d-mlp (--set hidden=32)")


def test_own_images_with_set_resume_and_predict(tmp_path):
    """The checkpoint of a data-sized model (own images: size, channels, classes) is checked as the data sized it."""
    from image_helpers import make_folder

    folder = str(make_folder(tmp_path / "shapes", per_class=12))
    args = ("--data-dir", folder, "--image-size", "24", "--batch-size", "8", "--set", "channels=4,8,16")
    first = _train("image-cnn", "torch", tmp_path / "run", *args, "--set", "hidden=none", "--epochs", "1")
    again = _train("image-cnn", "torch", tmp_path / "run", "--data-dir", folder, "--resume", "--epochs", "2")
    assert again["num_params"] == first["num_params"] and len(again["epochs"]) == 2
    image = next(Path(folder).glob("test/*/*.png"))
    proc = run_cli("predict", "image-cnn", str(image), "--weights", str(tmp_path / "run" / "weights.safetensors"))
    assert proc.returncode == 0 and proc.stdout.startswith(str(image)), proc.stderr

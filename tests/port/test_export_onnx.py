"""ONNX export through the torch twin, verified with onnxruntime against both twins before success."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import real_data_dir, run_cli

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "port"


def _weights(task_name: str, framework: str, path: Path, data_dir=None) -> Path:
    """Freshly initialised weights of ``framework``'s twin (seed 1), saved canonically."""
    from diptych.backends import load_backend
    from diptych.tasks import get_task
    from diptych.weights import save_weights

    task = get_task(task_name)
    task = task.objective.load(task, data_dir)[0]
    trainer = load_backend(framework).train.Trainer(task, 1, 1)
    save_weights(trainer.export_weights(), path, task=task_name)
    return path


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_export_mnist_cnn_from_either_twin(framework, tmp_path):
    mnist = real_data_dir("mnist")
    w = _weights("mnist-cnn", framework, tmp_path / f"{framework}.safetensors", str(mnist))
    out = tmp_path / "m.onnx"
    r = run_cli("export", "mnist-cnn", "--weights", str(w), "--onnx", str(out), "--data-dir", str(mnist), "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert out.is_file() and info["max_abs_vs_torch"] <= 1e-5 and info["max_abs_vs_jax"] <= 1e-5
    import onnxruntime as ort

    sess = ort.InferenceSession(str(out))  # the batch axis is dynamic: any batch size runs
    assert sess.run(None, {"x": np.zeros((5, 28, 28), np.float32)})[0].shape == (5, 10)


def test_export_recurrent_task(tmp_path):
    from diptych.commands.export import export_task

    info = export_task("mnist1d-gru", _weights("mnist1d-gru", "jax", tmp_path / "w.safetensors"), tmp_path / "g.onnx")
    assert info["max_abs_vs_torch"] <= 1e-5 and info["max_abs_vs_jax"] <= 1e-5


# Every model family besides those above (mnist-cnn: 2-D CNN, mnist1d-gru: GRU, fsdd-cnn: 2-D CNN on speech).
FAMILIES = {
    "mnist1d-mlp": "mlp",
    "mnist1d-cnn": "cnn",
    "mnist1d-rnn": "rnn",
    "mnist1d-lstm": "rnn",
    "fsdd-crnn": "crnn",
    "chars-lstm": "charlm",
}


@pytest.mark.parametrize("task_name", list(FAMILIES))
def test_export_every_model_family(task_name, tmp_path):
    """Each family exports, and the ONNX model gives both twins' outputs (the export verifies it; here
    onnxruntime runs the written file again, on a batch size it was not traced with)."""
    import onnxruntime as ort

    from diptych.commands.export import export_task
    from diptych.tasks import get_task

    task = get_task(task_name)
    data_dir = str(real_data_dir("fsdd")) if task.dataset == "fsdd" else None
    assert task.model.kind == FAMILIES[task_name]
    w = _weights(task_name, "jax", tmp_path / "w.safetensors", data_dir)
    info = export_task(task_name, w, tmp_path / "m.onnx", data_dir=data_dir)
    assert info["max_abs_vs_torch"] <= 1e-5 and info["max_abs_vs_jax"] <= 1e-5 and info["inputs"] >= 8
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"))
    (name,) = [i.name for i in sess.get_inputs()]
    shape = [3, *info["input_shape"][1:]]
    x = np.zeros(shape, np.int32 if task.model.kind == "charlm" else np.float32)  # character ids, or features
    (logits,) = sess.run(None, {name: x})
    assert logits.shape[0] == 3 and np.isfinite(logits).all()


def test_export_fsdd_task(tmp_path):
    from diptych.commands.export import export_task

    fsdd = str(real_data_dir("fsdd"))
    info = export_task(
        "fsdd-cnn", _weights("fsdd-cnn", "torch", tmp_path / "w.safetensors", fsdd), tmp_path / "f.onnx", data_dir=fsdd
    )
    assert info["max_abs_vs_torch"] <= 1e-5 and info["max_abs_vs_jax"] <= 1e-5


def test_missing_onnx_is_one_line_hint(monkeypatch, tmp_path):
    from diptych.commands.export import HINT, export_task
    from diptych.errors import DiptychError

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed: import fails
    with pytest.raises(DiptychError, match="diptych\\[onnx\\]") as e:
        export_task("mnist1d-gru", tmp_path / "none.safetensors", tmp_path / "x.onnx")
    assert str(e.value) == HINT


def test_port_export_verifies_against_both_twins(tmp_path):
    out = tmp_path / "block.onnx"
    r = run_cli(
        "port",
        "export",
        f"{EXAMPLES / 'transformer.py'}:torch_model",
        str(out),
        "--input",
        "2,5,16",
        "--jax",
        f"{EXAMPLES / 'transformer.py'}:nnx_model",
    )
    assert r.returncode == 0, r.stderr
    assert out.is_file() and "vs torch" in r.stdout and "vs jax" in r.stdout

"""``diptych export``: a task's model as ONNX, through the torch twin, verified before success.

Weights from either twin (canonical ``.safetensors``, torch ``.pt`` or Flax ``.msgpack``) are loaded into
the torch twin, which ``torch.onnx.export`` traces with a dynamic batch axis. The file is then run by
onnxruntime on real test inputs and compared with *both* twins' logits (max abs <= 1e-5); only then is
success reported (a failed export leaves no file). The graph takes the model's input as the twins do:
images ``(B, 1, 28, 28)``, MNIST-1D rows, FSDD log-mel features ``(B, 1, 32, 64)`` (the wav front end
stays in numpy), or character ids ``(B, T)`` for a language model (logits from a zero state).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diptych.errors import DiptychError

TOLERANCE = 1e-5
HINT = "ONNX export needs onnx, onnxscript and onnxruntime: pip install 'diptych[onnx]'"


def _need_onnx():
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError:
        raise DiptychError(HINT) from None
    return onnxruntime


def export_torch_module(model, example: np.ndarray, out: str | Path) -> None:
    """``torch.onnx.export`` with a dynamic batch axis (the TorchScript exporter: ``dynamo=False``)."""
    import warnings

    import torch

    model.eval()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.from_numpy(example),), str(out), dynamo=False, input_names=["x"],
                          output_names=["logits"], dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=17)


def run_onnx(path: str | Path, x: np.ndarray) -> np.ndarray:
    ort = _need_onnx()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


class _Logits:
    """The torch twin's module with the language model's state dropped (ONNX gets logits only)."""

    def __new__(cls, model):
        import torch

        class Wrap(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.inner = model

            def forward(self, x):
                y = self.inner(x)
                return y[0] if isinstance(y, tuple) else y

        return Wrap()


def export_task(task_name: str, weights: str | Path, out: str | Path, data_dir: str | None = None,
                n: int = 64) -> dict:
    """Export ``task_name``'s torch twin with ``weights`` to ``out``; verify against both twins."""
    from diptych.backends import load_backend
    from diptych.convert import read_any
    from diptych.driver import load_task_data
    from diptych.tasks import get_task

    _need_onnx()
    params, _, _ = read_any(weights)
    task, data, _ = load_task_data(get_task(task_name), data_dir)
    if data.x_test.ndim == 2 and data.x_test.dtype.kind in "iu" and task.dataset == "text":
        x = np.ascontiguousarray(data.x_test[:8])  # (B, T) ids
    else:
        x = np.ascontiguousarray(data.x_test[:n])
    tt = load_backend("torch").train.Trainer(task, 0, 1)
    tt.load_weights(params, str(weights))
    jt = load_backend("jax").train.Trainer(task, 0, 1)
    jt.load_weights(params, str(weights))
    if task.dataset == "text":
        want_t, want_j = tt.predict_sequence(x)[0], np.asarray(jt.predict_sequence(x)[0])
    else:
        want_t, want_j = tt.predict(x), jt.predict(x)
    out = Path(out)
    tmp = out.with_name(out.name + ".partial")
    try:
        export_torch_module(_Logits(getattr(tt.model, "_orig_mod", tt.model)), x[:2], tmp)
        got = run_onnx(tmp, x)
        d_t = float(np.max(np.abs(got - want_t)))
        d_j = float(np.max(np.abs(got - want_j)))
        if not (d_t <= TOLERANCE and d_j <= TOLERANCE):
            raise DiptychError(f"the ONNX model of {task_name} differs from the twins on {len(x)} test inputs "
                               f"(max abs {d_t:.1e} vs torch, {d_j:.1e} vs jax; bound {TOLERANCE:g}); not written")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return {"task": task_name, "onnx": str(out), "inputs": len(x), "input_shape": ["batch", *x.shape[1:]],
            "max_abs_vs_torch": d_t, "max_abs_vs_jax": d_j}

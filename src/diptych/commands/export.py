"""``diptych export``: a task's model as ONNX, through the torch twin, verified before success.

Weights from either twin (canonical ``.safetensors``, torch ``.pt`` or Flax ``.msgpack``) are loaded into the
torch twin, which ``torch.onnx.export`` traces with a dynamic batch axis (:mod:`diptych.backends.torch.onnx`).
The exported model is then run by onnxruntime on real test inputs and compared with *both* twins' logits (max abs <=
1e-5); only then is the file written (through the atomic writer: a failed export leaves no file, and there is
no temporary name another file could be planted at). The graph takes the model's input as the twins do: images
``(B, 1, 28, 28)``, MNIST-1D rows, FSDD log-mel features ``(B, 1, 32, 64)`` (the wav front end stays in
numpy), or character ids ``(B, T)`` for a language model (logits from a zero state; a GPT's ``T`` is a
dynamic axis up to its context, checked at two lengths). There is no JAX exporter:
jax2onnx brings equinox, orbax, huggingface-hub and netron with it, so it was not adopted.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from diptych.backends import load_backend
from diptych.errors import DiptychError
from diptych.formats import read_any
from diptych.fsio import atomic_write
from diptych.inference import InferenceMeta
from diptych.tasks import TASKS, get_task

TOLERANCE = 1e-5
HINT = "ONNX export needs onnx, onnxscript and onnxruntime: pip install 'diptych[onnx]'"


def _need_onnx():
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError:
        raise DiptychError(HINT) from None
    return onnxruntime


def run_onnx(model: str | Path | bytes, x: np.ndarray) -> np.ndarray:
    """Run an ONNX model (a file, or a file's bytes) on ``x`` with onnxruntime."""
    ort = _need_onnx()
    sess = ort.InferenceSession(model if isinstance(model, bytes) else str(model), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def export_task(task_name: str, weights: str | Path, out: str | Path, data_dir: str | None = None, n: int = 64) -> dict:
    """Export ``task_name``'s torch twin with ``weights`` to ``out``; verify against both twins."""
    _need_onnx()
    params, _, meta = read_any(weights)
    task = InferenceMeta.read(weights, meta).fit_task(get_task(task_name), weights)  # as trained (--set overrides)
    task, data, _ = task.objective.load(task, data_dir)
    stateful = task.model.carries_state  # a language model: ids (B, T) in, logits (B, T, V) out
    context = getattr(task.model, "context", None)  # a transformer LM: any length up to its context
    x = np.ascontiguousarray(data.x_test[:8, :context] if context else data.x_test[:8] if stateful else data.x_test[:n])
    tt = load_backend("torch").train.Trainer(task, 0, 1)
    tt.load_weights(params, str(weights))
    jt = load_backend("jax").train.Trainer(task, 0, 1)
    jt.load_weights(params, str(weights))
    if stateful:
        want_t, want_j = tt.predict_sequence(x)[0], np.asarray(jt.predict_sequence(x)[0])
    else:
        want_t, want_j = tt.predict(x), jt.predict(x)
    out = Path(out)
    onnx = load_backend("torch").onnx
    model = onnx.export_module(onnx.Logits(getattr(tt.model, "_orig_mod", tt.model)), x[:2], seq_axis=bool(context))
    got = run_onnx(model, x)
    d_t = float(np.max(np.abs(got - want_t)))
    d_j = float(np.max(np.abs(got - want_j)))
    if context:  # the sequence axis is dynamic: a shorter window gives the twins' logits too
        short = np.ascontiguousarray(x[:, : context // 2 + 1])
        got = run_onnx(model, short)
        d_t = max(d_t, float(np.max(np.abs(got - tt.predict(short)))))
        d_j = max(d_j, float(np.max(np.abs(got - jt.predict(short)))))
    if not (d_t <= TOLERANCE and d_j <= TOLERANCE):
        raise DiptychError(
            f"the ONNX model of {task_name} differs from the twins on {len(x)} test inputs "
            f"(max abs {d_t:.1e} vs torch, {d_j:.1e} vs jax; bound {TOLERANCE:g}); not written"
        )
    atomic_write(out, model)  # verified: only now is there a file (a full disk: one line, nothing left)
    return {
        "task": task_name,
        "onnx": str(out),
        "inputs": len(x),
        "input_shape": ["batch", *(["sequence"] if context else x.shape[1:])],
        "max_abs_vs_torch": d_t,
        "max_abs_vs_jax": d_j,
    }


@click.command("export")
@click.argument("task", metavar="TASK")
@click.option(
    "--weights",
    type=click.Path(dir_okay=False),
    required=True,
    help="Weights of either twin: .safetensors, .pt or .msgpack.",
)
@click.option("--onnx", "onnx_out", type=click.Path(dir_okay=False), required=True, metavar="OUT.onnx")
@click.option(
    "--from",
    "source",
    type=click.Choice(["torch", "jax"]),
    default="torch",
    show_default=True,
    help="Which twin is exported (jax: not available, see docs/porting.md).",
)
@click.option("--data-dir", type=click.Path(file_okay=False), help="Folder with the dataset files (test inputs).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def export(task, weights, onnx_out, source, data_dir, as_json):
    """Export TASK's model to ONNX through the torch twin; verified with onnxruntime against both twins."""
    if task not in TASKS:
        raise DiptychError(f"unknown task {task!r}; see `diptych list`")
    if source == "jax":
        raise DiptychError(
            "--from jax is not available: jax2onnx is not a dependency here; export through the "
            "torch twin (the default), which loads weights from either twin"
        )
    info = export_task(task, weights, onnx_out, data_dir)
    if as_json:
        click.echo(json.dumps(info))
    else:
        click.echo(
            f"{info['onnx']}: {task}, input {tuple(info['input_shape'])}; onnxruntime on {info['inputs']} test "
            f"inputs: max abs {info['max_abs_vs_torch']:.1e} vs torch, {info['max_abs_vs_jax']:.1e} vs jax"
        )

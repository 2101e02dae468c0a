"""The transformers in both twins: the same model (logits, gradients, AdamW steps), generation through a
key/value cache that equals the full forward, greedy text identical across the twins, one compiled decode
step in JAX, the parameter groups of weight decay, and ONNX export. (Logits and gradients on random weights
for every registry model: tests/parity/test_modeldiffs.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import run_cli
from diptych.backends import load_backend
from diptych.language import cached_sequence
from diptych.parity import run_parity
from diptych.tasks import TASKS, fit_vocab

pytestmark = pytest.mark.usefixtures("float32")
V = 37


@pytest.fixture(scope="module")
def twins():
    """The chars-gpt twins with one set of random weights (the torch twin's initialization)."""
    task = fit_vocab(TASKS["chars-gpt"], V)
    tt = load_backend("torch").train.Trainer(task, 0, 1)
    jt = load_backend("jax").train.Trainer(task, 0, 1)
    jt.load_weights(tt.export_weights())
    return task, tt, jt


def ids(b: int, t: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, V, (b, t)).astype(np.int32)


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_cached_logits_equal_the_full_forward(twins, framework):
    task, tt, jt = twins
    trainer = {"torch": tt, "jax": jt}[framework]
    x = ids(3, task.model.context)
    full = trainer.predict(x)  # (B, T, V): one pass, no cache
    prompt, state = cached_sequence(trainer, x[:, :10], None, task.model.context)  # prefill 10
    steps = [prompt]
    for t in range(10, 20):  # decode one at a time
        step, state = trainer.predict_sequence(x[:, t : t + 1], state)
        steps.append(step)
    cached = np.concatenate(steps, axis=1)
    assert np.max(np.abs(cached - full[:, :20])) <= 1e-5
    state = None  # the same through predict_sequence: prefill 20, then the rest one by one
    logits, state = trainer.predict_sequence(x[:, :20], state)
    for t in range(20, task.model.context):
        step, state = trainer.predict_sequence(x[:, t : t + 1], state)
        logits = np.concatenate([logits, step], axis=1)
    assert np.max(np.abs(logits - full)) <= 1e-5


def test_a_full_cache_slides_by_half_a_context(twins):
    """Past the context, every prediction sees the last context/2 .. context-1 ids: the logits at position
    ``t`` equal a fresh full forward over the window the cache holds."""
    task, tt, _ = twins
    c = task.model.context
    x = ids(2, c + c // 2 + 5, seed=1)
    logits, state = tt.predict_sequence(x, None)  # (B, T, V)
    assert logits.shape == (2, x.shape[1], V) and state.ids.shape[1] == c // 2 + 5
    window = x[:, c:]  # what the cache holds after two slides: the last c/2 + 5 ids
    assert np.max(np.abs(logits[:, -1] - tt.predict(window)[:, -1])) <= 1e-5


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_generation_is_the_same_text_in_both_twins(twins, temperature):
    """Greedy, and sampled with one numpy seed (the draw is numpy's, the probabilities each twin's own)."""
    from diptych.commands.generate import sample

    task = twins[0]
    rng = np.random.default_rng(4)  # weights far from the initialization's
    params = {k: rng.normal(0, 0.3, s).astype(np.float32) for k, s in task.model.param_shapes().items()}
    out = {}
    for name in ("torch", "jax"):
        trainer = load_backend(name).train.Trainer(task, 0, 1)
        trainer.load_weights(params)
        draws = np.random.default_rng(0)
        logits, state = trainer.predict_sequence(ids(1, 5, seed=2), None)
        tokens = []
        for _ in range(2 * task.model.context):  # past the context: the cache slides
            nxt = sample(logits[0, -1], temperature, draws)
            tokens.append(nxt)
            logits, state = trainer.predict_sequence(np.array([[nxt]], np.int32), state)
        out[name] = tokens
    assert out["torch"] == out["jax"]
    if temperature:
        assert len(set(out["torch"])) > 5  # a varied text: many different cache contents compared


def test_jax_decodes_with_one_compiled_step(twins):
    from diptych.backends.jax import transformer

    task, _, jt = twins
    logits, state = jt.predict_sequence(ids(1, 7, seed=3), None)
    logits, state = jt.predict_sequence(np.array([[1]], np.int32), state)  # the decode step compiles here
    compiled = transformer.extend._cache_size()
    for t in range(40):  # positions 8 .. 47: one step, traced position
        logits, state = jt.predict_sequence(np.array([[t % V]], np.int32), state)
    assert transformer.extend._cache_size() == compiled


def test_weight_decay_skips_biases_and_norms_in_both_twins():
    import jax
    from flax import nnx

    from diptych.backends.jax.train import make_optimizer as jax_optimizer
    from diptych.backends.torch.train import make_optimizer as torch_optimizer

    task = fit_vocab(TASKS["chars-gpt"], V)
    tt = load_backend("torch").train.Trainer(task, 0, 1)
    groups = torch_optimizer(task.optimizer, tt.model.parameters()).param_groups
    decayed = {n for n, p in tt.model.named_parameters() if any(p is q for q in groups[0]["params"])}
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    assert decayed == {n for n, p in tt.model.named_parameters() if p.dim() >= 2}
    assert "embed.weight" in decayed and "blocks.0.ln1.weight" not in decayed and "ln_f.bias" not in decayed
    # JAX: a zero gradient moves exactly the decayed tensors (optax's mask = the torch groups)
    jt = load_backend("jax").train.Trainer(task, 0, 100)
    tx = jax_optimizer(task.optimizer, 100)
    params = jt.params
    zeros = jax.tree.map(np.zeros_like, params)
    state = tx.init(params)
    for _ in range(3):  # past the warm-up's zero first step
        updates, state = tx.update(zeros, state, params)
    moved = {
        k
        for k, v in load_backend("jax").weights.to_canonical(task.model, nnx.to_pure_dict(updates)).items()
        if np.any(v)
    }
    assert moved == decayed


@pytest.mark.parametrize("name", ["chars-gpt", "mnist-vit"])
def test_parity_passes_with_the_tasks_own_adamw(name, request):
    dataset = request.getfixturevalue("mnist") if name == "mnist-vit" else None
    report = run_parity(name, steps=5, optimizer=None, dataset=dataset.head(256) if dataset else None)
    assert report.optimizer == "adamw"
    assert report.ok, [r.as_dict() for r in report.rows if not r.ok]


def test_generate_command_greedy_and_top_k(tmp_path):
    out = tmp_path / "run"
    run_cli("train", "chars-gpt", "--framework", "jax", "--epochs", "0.02", "--out", str(out)).check_returncode()
    weights = str(out / "weights.safetensors")
    texts = [
        run_cli("generate", "chars-gpt", "--weights", weights, "--framework", fw, "--greedy", "--max-new", "80")
        for fw in ("torch", "jax")
    ]
    assert texts[0].returncode == 0 and texts[0].stdout == texts[1].stdout and len(texts[0].stdout) > 80
    topk = run_cli("generate", "chars-gpt", "--weights", weights, "--framework", "torch", "--top-k", "3")
    assert topk.returncode == 0
    bad = run_cli("generate", "chars-gpt", "--weights", weights, "--top-k", "0")
    assert bad.returncode == 2 and "--top-k" in bad.stderr


@pytest.mark.parametrize("name", ["chars-gpt"])
def test_onnx_export_with_a_dynamic_sequence_axis(name, tmp_path):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "run"
    run_cli("train", name, "--framework", "torch", "--epochs", "0.02", "--out", str(out)).check_returncode()
    onnx = tmp_path / "gpt.onnx"
    r = run_cli("export", name, "--weights", str(out / "weights.safetensors"), "--onnx", str(onnx), "--json")
    assert r.returncode == 0, r.stderr
    assert onnx.stat().st_size > 0 and '"sequence"' in r.stdout

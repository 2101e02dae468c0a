"""Character language models in the neutral core: data layout, held-out bits/char, and sampling.

The backends give a stateful forward, ``trainer.predict_sequence(ids (B, T), state) -> (logits
(B, T, V), state)``; everything else here is numpy, so both twins are scored, and sample, the
same way. Sampling draws from ``numpy.random.default_rng(seed)``, not from a framework RNG, so
the same weights, seed and prompt give the same text in either framework.

    >>> from diptych.language import generate                       # doctest: +SKIP
    >>> generate("runs/chars-lstm/torch/weights.safetensors", "jax", "The ", 80, temperature=0)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diptych.backends import load_backend
from diptych.data import Dataset
from diptych.data.text import MAX_VOCAB, decode, encode, load_text, unigram_bpc, windows
from diptych.errors import DiptychError
from diptych.tasks import Task, fit_vocab, get_task
from diptych.weights import check_weights, read_safetensors

EVAL_STREAMS, EVAL_WINDOW = 16, 128  # held-out text: 16 streams read in 128-character windows


def text_dataset(task: Task, text: str | None, batch_size: int) -> tuple[Task, Dataset, dict]:
    """The corpus as TBPTT windows (:func:`diptych.data.text.windows`): the task with its vocabulary
    size filled in, a :class:`Dataset` (``x``/``y`` ids ``(N, T)``), and facts for the run record."""
    corpus = load_text(text)
    task = fit_vocab(task, len(corpus.vocab))
    x_train, y_train = windows(corpus.train, batch_size, task.model.seq_len)
    x_val, y_val = windows(corpus.val, EVAL_STREAMS, EVAL_WINDOW)
    info = {"corpus": corpus.name, "vocab": corpus.vocab, "train_chars": len(corpus.train),
            "val_chars": len(corpus.val), "unigram_bpc": unigram_bpc(corpus.train, corpus.val, len(corpus.vocab))}
    return task, Dataset(corpus.name, x_train, y_train, x_val, y_val, num_classes=len(corpus.vocab), ordered=True), info


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def evaluate_lm(trainer, x: np.ndarray, y: np.ndarray, streams: int = EVAL_STREAMS) -> dict:
    """Held-out bits per character and next-character accuracy, reading the ``streams`` rows of
    each window in order with the recurrent state carried across windows."""
    state, nll, correct = None, 0.0, 0
    for start in range(0, len(x), streams):
        logits, state = trainer.predict_sequence(x[start:start + streams], state)  # (B, T, V)
        target = y[start:start + streams]  # (B, T)
        nll -= float(np.take_along_axis(log_softmax(logits), target[..., None], -1).sum())
        correct += int((logits.argmax(-1) == target).sum())
    return {"bpc": float(nll / np.log(2) / y.size), "accuracy": correct / y.size}


def load_lm(weights: str | Path) -> tuple[Task, dict[str, np.ndarray], str]:
    """A language model's task (vocabulary filled in), canonical weights and vocabulary."""
    params, meta = read_safetensors(weights)
    name = meta.get("task")
    task = get_task(name) if isinstance(name, str) else None
    if task is None or task.dataset != "text" or not isinstance(meta.get("vocab"), str) \
            or not 1 <= len(meta["vocab"]) <= MAX_VOCAB:
        raise DiptychError(f"{weights} is not a diptych language model's weights.safetensors "
                           "(it has no vocabulary); train one with `diptych train chars-lstm`")
    task = fit_vocab(task, len(meta["vocab"]))
    check_weights(params, task.model.param_shapes(), str(weights))
    return task, params, meta["vocab"]


def sample(logits: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    """Greedy (argmax) at temperature 0, else a draw from ``softmax(logits / temperature)``."""
    if temperature == 0:
        return int(logits.argmax())
    with np.errstate(over="ignore"):
        z = logits.astype(np.float64) / temperature
    if not np.isfinite(z).all():  # a temperature so small that the logits overflow: that is greedy
        return int(logits.argmax())
    p = np.exp(log_softmax(z))
    return int(rng.choice(len(p), p=p / p.sum()))


def generate(weights: str | Path, framework: str, prompt: str, length: int, temperature: float = 1.0,
             seed: int = 0, task: str | None = None) -> str:
    """``prompt`` followed by ``length`` characters sampled from the model, one at a time
    (``task``, when given, must be the one the weights were trained for)."""
    if not prompt:
        raise DiptychError("--prompt is empty; give at least one character to start from")
    if temperature < 0:
        raise DiptychError(f"--temperature must be >= 0 (0 is greedy), got {temperature}")
    lm, params, vocab = load_lm(weights)
    if task is not None and lm.name != task:
        raise DiptychError(f"{weights} holds {lm.name} weights, not {task}; pass the right TASK")
    ids = encode(prompt, vocab)  # refuses characters the model never saw
    trainer = load_backend(framework).train.Trainer(lm, 0, 1)
    trainer.load_weights(params, str(weights))
    rng = np.random.default_rng(seed)
    logits, state = trainer.predict_sequence(ids[None, :], None)  # read the whole prompt: (1, P, V)
    out = []
    for _ in range(length):
        nxt = sample(logits[0, -1], temperature, rng)
        out.append(nxt)
        logits, state = trainer.predict_sequence(np.array([[nxt]], np.int32), state)  # (1, 1, V)
    return prompt + decode(out, vocab)

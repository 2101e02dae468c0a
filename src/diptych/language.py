"""Character language models in the neutral core: their objective, data layout and held-out bits/char.

The backends give a stateful forward, ``trainer.predict_sequence(ids (B, T), state) -> (logits
(B, T, V), state)``; everything else here is numpy, so both twins are scored the same way.
Sampling text is the ``generate`` command (:mod:`diptych.commands.generate`).

    >>> lm = LanguageModelling(0.5, "half the unigram model's bits/char")
    >>> lm.metric, lm.higher_is_better, lm.bar({"unigram_bpc": 4.6})
    ('test_bpc', False, 2.3)
    >>> lm.reached({"test_bpc": 1.77}, 2.3)
    True
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from diptych.data import Dataset
from diptych.data.text import VAL_FRACTION, load_text, unigram_bpc, windows
from diptych.errors import DiptychError
from diptych.objectives import Objective, log_softmax

EVAL_STREAMS, EVAL_WINDOW = 16, 128  # held-out text: 16 streams read in 128-character windows


def text_dataset(task, text: str | None, batch_size: int) -> tuple:
    """The corpus as TBPTT windows (:func:`diptych.data.text.windows`): the task with its vocabulary
    size filled in, a :class:`Dataset` (``x``/``y`` ids ``(N, T)``), and facts for the run record."""
    corpus = load_text(text)
    task = dataclasses.replace(task, model=task.model.with_vocab(len(corpus.vocab)))  # V from the corpus
    _check_length(corpus, batch_size, task.model.seq_len)
    x_train, y_train = windows(corpus.train, batch_size, task.model.seq_len)
    x_val, y_val = windows(corpus.val, EVAL_STREAMS, EVAL_WINDOW)
    info = {
        "corpus": corpus.name,
        "vocab": corpus.vocab,
        "train_chars": len(corpus.train),
        "val_chars": len(corpus.val),
        "unigram_bpc": unigram_bpc(corpus.train, corpus.val, len(corpus.vocab)),
    }
    # A recurrent model reads its windows in order (its state runs on); a transformer's are shuffled.
    data = Dataset(corpus.name, x_train, y_train, x_val, y_val, len(corpus.vocab), ordered=task.model.carries_state)
    return task, data, info


def _check_length(corpus, batch_size: int, seq_len: int) -> None:
    """Both parts of the text must hold one window per stream (and the last target): else one line naming
    the part, what it holds and needs, and the text length that would do."""
    total = len(corpus.train) + len(corpus.val)
    parts = (
        ("its first 90%, the training text,", 0, batch_size, seq_len, " or a smaller --batch-size"),
        ("its last 10%, the held-out text,", 1, EVAL_STREAMS, EVAL_WINDOW, ""),
    )
    for part, side, streams, window, other in parts:
        need, have = streams * window + 1, len((corpus.train, corpus.val)[side])
        if have < need:
            enough = max(1, math.floor(need / (VAL_FRACTION if side else 1 - VAL_FRACTION)) - 10)
            while _split(enough)[side] < need:
                enough += 1
            raise DiptychError(
                f"{corpus.name}: a text of {total:,} characters is too short: {part} holds {have:,} characters, "
                f"and {streams} streams of {window}-character windows need {need:,}; use a text of at least "
                f"{enough:,} characters{other}"
            )


def _split(n: int) -> tuple[int, int]:
    """The lengths of the training and held-out parts of a text of ``n`` characters (as load_text splits)."""
    split = int(n * (1 - VAL_FRACTION))
    return split, n - split


@dataclasses.dataclass
class Window:
    """What a transformer carries from one call of ``predict_sequence`` to the next: its key/value
    cache (the backend's own object) and the ids whose keys and values it holds, ``(B, filled)``."""

    cache: object
    ids: np.ndarray


def cached_sequence(trainer, x: np.ndarray, state: Window | None, context: int) -> tuple[np.ndarray, Window]:
    """A transformer's ``predict_sequence``: logits ``(B, T, V)`` for ids ``x`` ``(B, T)`` of any length,
    continuing the text in ``state``, through the backend's two primitives ``trainer.new_cache(B)`` and
    ``trainer.extend(ids, cache, pos) -> (logits, cache)`` (keys and values written at ``pos ..``).

    A model sees at most ``context`` positions. When the cache is full, it is rebuilt from the last
    ``context // 2`` ids and the text goes on from there, so every prediction after the first
    ``context // 2`` sees between ``context // 2`` and ``context - 1`` earlier characters: a sliding window
    that costs one re-read of half a context per half a context predicted. Written once here, so both
    twins slide identically (their greedy generations match token for token)."""
    b, t = x.shape
    state = Window(trainer.new_cache(b), x[:, :0]) if state is None else state
    out, i = [], 0
    while i < t:
        if state.ids.shape[1] == context:  # full: keep the last half, re-read it into a fresh cache
            keep = state.ids[:, context - context // 2 :]
            state = Window(trainer.extend(keep, trainer.new_cache(b), 0)[1], keep)
        pos = state.ids.shape[1]
        n = min(t - i, context - pos)
        logits, cache = trainer.extend(x[:, i : i + n], state.cache, pos)  # (B, n, V)
        state = Window(cache, np.concatenate([state.ids, x[:, i : i + n]], axis=1))
        out.append(logits)
        i += n
    return np.concatenate(out, axis=1), state


def evaluate_lm(trainer, x: np.ndarray, y: np.ndarray, streams: int = EVAL_STREAMS) -> dict:
    """Held-out bits per character and next-character accuracy, reading the ``streams`` rows of
    each window in order with the recurrent state carried across windows."""
    state, nll, correct = None, 0.0, 0
    for start in range(0, len(x), streams):
        logits, state = trainer.predict_sequence(x[start : start + streams], state)  # (B, T, V)
        target = y[start : start + streams]  # (B, T)
        nll -= float(np.take_along_axis(log_softmax(logits), target[..., None], -1).sum())
        correct += int((logits.argmax(-1) == target).sum())
    return {"bpc": float(nll / np.log(2) / y.size), "accuracy": correct / y.size}


@dataclasses.dataclass(frozen=True)
class LanguageModelling(Objective):
    """Next-character prediction, scored by held-out bits per character; reached at or below
    ``bpc_vs_unigram`` times the unigram model's bits/char on the same text."""

    bpc_vs_unigram: float
    reference: str
    metric = "test_bpc"
    higher_is_better = False
    target_accuracy = None  # judged by bits/char

    def load(self, task, data_dir=None, *, text=None, split=None, dataset=None):
        return text_dataset(task, text, task.budget.batch_size)

    def sized(self, task):
        vocab = len(load_text().vocab)  # the default corpus: Python's bundled help text
        return dataclasses.replace(task, model=task.model.with_vocab(vocab))

    def evaluate(self, trainer, data, facts=None, detail=False):
        scores = evaluate_lm(trainer, data.x_test, data.y_test)
        metrics = {"test_accuracy": scores["accuracy"], "test_bpc": scores["bpc"]}
        if detail:
            metrics |= {
                "unigram_bpc": facts["unigram_bpc"],
                "correct": None,
                "total": int(data.y_test.size),
                "predictions": None,
            }
        return metrics

    def bar(self, facts):
        return self.bpc_vs_unigram * facts["unigram_bpc"]

    def record(self, history, facts):
        bar = self.bar(facts)
        return {
            "test_accuracy": history[-1]["test_accuracy"],
            "test_bpc": history[-1]["test_bpc"],
            "unigram_bpc": facts["unigram_bpc"],
            "target_bpc": bar,
            "target_accuracy": None,
            "reached_target": self.reached(history[-1], bar),
        }

    def epoch_note(self, metrics):
        return f"  bits/char {metrics['test_bpc']:.3f}"

    def score_line(self, record):
        if "target_bpc" not in record:  # an evaluation of saved weights
            return (
                f"held-out {record['test_bpc']:.3f} bits/char (unigram {record['unigram_bpc']:.3f}), "
                f"next-char accuracy {100 * record['test_accuracy']:.1f}%"
            )
        return (
            f"held-out {record['test_bpc']:.3f} bits/char (target <= {record['target_bpc']:.3f}; "
            f"unigram {record['unigram_bpc']:.3f}), next-char accuracy {100 * record['test_accuracy']:.1f}%"
        )

    def describe_target(self):
        return f"<= {self.bpc_vs_unigram:g}x unigram bits/char"

    def inference_meta(self, data, facts):
        return {"vocab": facts["vocab"]}  # a language model is useless without its vocabulary

"""``diptych generate``: sample text from a character language model trained by either twin.

Sampling draws from ``numpy.random.default_rng(seed)`` on the probabilities the twin computes, not
from a framework RNG, so the same weights, seed and prompt give the same text in either framework.

    >>> from diptych.commands.generate import generate              # doctest: +SKIP
    >>> generate("runs/chars-lstm/torch/weights.safetensors", "jax", "The ", 80, temperature=0)  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from diptych.backends import load_backend
from diptych.commands.options import SEED, finite, twin_option
from diptych.data.text import MAX_VOCAB, decode, encode
from diptych.errors import DiptychError
from diptych.inference import InferenceMeta
from diptych.language import LanguageModelling
from diptych.objectives import log_softmax
from diptych.tasks import TASKS, Task, fit_vocab, get_task
from diptych.weights import check_weights, read_safetensors

LM_TASKS = tuple(name for name, t in TASKS.items() if isinstance(t.objective, LanguageModelling))


def load_lm(weights: str | Path) -> tuple[Task, dict[str, np.ndarray], str]:
    """A language model's task (vocabulary filled in), canonical weights and vocabulary."""
    params, raw = read_safetensors(weights)
    meta = InferenceMeta.read(weights, raw)
    if meta.task not in LM_TASKS or meta.vocab is None or not 1 <= len(meta.vocab) <= MAX_VOCAB:
        raise DiptychError(
            f"{weights} is not a diptych language model's weights.safetensors "
            "(it has no vocabulary); train one with `diptych train chars-lstm`"
        )
    task = meta.fit_task(fit_vocab(get_task(meta.task), len(meta.vocab)), weights)  # the model as trained (--set)
    check_weights(params, task.model.param_shapes(), str(weights))
    return task, params, meta.vocab


def sample(logits: np.ndarray, temperature: float, rng: np.random.Generator, top_k: int | None = None) -> int:
    """Greedy (argmax) at temperature 0, else a draw from ``softmax(logits / temperature)``, over the
    ``top_k`` most likely ids only when given (the rest get probability 0)."""
    if temperature == 0:
        return int(logits.argmax())
    with np.errstate(over="ignore"):
        z = logits.astype(np.float64) / temperature
    if top_k is not None and top_k < len(z):
        z = np.where(z >= np.sort(z)[-top_k], z, -np.inf)  # ties at the k-th value stay in
    if not np.isfinite(z).all():  # a temperature so small that the logits overflow: that is greedy
        return int(logits.argmax())
    with np.errstate(invalid="ignore"):
        p = np.exp(log_softmax(z))
    return int(rng.choice(len(p), p=p / p.sum()))


def generate(
    weights: str | Path,
    framework: str,
    prompt: str,
    length: int,
    temperature: float = 1.0,
    seed: int = 0,
    task: str | None = None,
    top_k: int | None = None,
) -> str:
    """``prompt`` followed by ``length`` characters sampled from the model, one at a time
    (``task``, when given, must be the one the weights were trained for). A recurrent model carries its
    state from one character to the next; a transformer its key/value cache (one cached decode step per
    character: :func:`diptych.language.cached_sequence`)."""
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
        nxt = sample(logits[0, -1], temperature, rng, top_k)
        out.append(nxt)
        logits, state = trainer.predict_sequence(np.array([[nxt]], np.int32), state)  # (1, 1, V)
    return prompt + decode(out, vocab)


@click.command("generate")
@click.argument("task", type=click.Choice(LM_TASKS), metavar="TASK")
@click.option("--weights", type=click.Path(dir_okay=False), required=True, help="weights.safetensors of either twin.")
@twin_option("Which twin runs.")
@click.option("--prompt", default="The ", show_default=True, help="Text to start from (characters the model knows).")
@click.option(
    "--max-new",
    "--length",
    "length",
    type=click.IntRange(0, 10**6),
    default=200,
    show_default=True,
    help="Characters to add.",
)
@click.option(
    "--temperature",
    type=click.FloatRange(min=0),
    default=0.8,
    show_default=True,
    callback=finite,
    help="0 = greedy; higher = more varied.",
)
@click.option("--top-k", type=click.IntRange(min=1), help="Sample from the K most likely characters only.")
@click.option("--greedy", is_flag=True, help="Always the most likely character (the same as --temperature 0).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Sampling seed (the same in both twins).")
def generate_cmd(task, weights, framework, prompt, length, temperature, top_k, greedy, seed):
    """Sample text from a trained character language model (weights from either twin)."""
    temperature = 0.0 if greedy else temperature
    click.echo(generate(weights, framework, prompt, length, temperature, seed, task=task, top_k=top_k))

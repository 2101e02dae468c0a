"""Text corpora for character-level language models, as int32 id streams.

The default corpus needs no download: the English help topics that ship with Python itself
(``pydoc_data.topics``, about 465k characters; the exact text follows the Python version, so the
vocabulary is stored with every weights file). Any UTF-8 file works instead (``--text FILE``).

Truncated backprop through time with state carried across batches needs each row of batch
``k + 1`` to continue the same row of batch ``k``. :func:`windows` lays the stream out that way:
split it into ``B`` contiguous streams, cut each into windows of ``T`` characters, and order the
windows window-major, so rows ``[w*B, (w+1)*B)`` are window ``w`` of every stream.

    >>> x, y = windows(np.arange(21, dtype=np.int32), streams=2, seq_len=4)
    >>> x[:2].tolist(), y[:2].tolist()   # window 0 of stream 0 and of stream 1
    ([[0, 1, 2, 3], [10, 11, 12, 13]], [[1, 2, 3, 4], [11, 12, 13, 14]])
    >>> x[2].tolist()                    # window 1 of stream 0 carries on from window 0
    [4, 5, 6, 7]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diptych.errors import DataError, DiptychError

VAL_FRACTION = 0.1  # the last 10% of the text is the held-out split
MAX_VOCAB = 4096  # distinct characters: an alphabet or a few, not a whole script's ideographs
MAX_TEXT_BYTES = 1 << 28  # 256 MiB: ids, windows and their shuffles must fit in memory many times over


@dataclass
class TextCorpus:
    name: str
    vocab: str  # the sorted characters; id i is vocab[i]
    train: np.ndarray  # (N_train,) int32 ids
    val: np.ndarray  # (N_val,) int32 ids


def default_text() -> str:
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics))


def read_text(path: str | Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"text file {path} does not exist; pass --text with a UTF-8 text file")
    if (size := path.stat().st_size) > MAX_TEXT_BYTES:
        raise DataError(
            f"{path} has {size:,} bytes, more than the {MAX_TEXT_BYTES:,} a character model here "
            f"trains on; use a part of it, e.g. `head -c 100M {path.name}`"
        )
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(
            f"{path} is not UTF-8 text (bad byte at offset {e.start}); convert it, e.g. `iconv -t UTF-8 {path.name}`"
        ) from None
    if not text.strip():
        raise DataError(f"{path} is empty; give a text file with some content")
    return text


def load_text(path: str | Path | None = None) -> TextCorpus:
    """The corpus at ``path`` (default: Python's bundled help topics), split 90/10 in order."""
    text = default_text() if path is None else read_text(path)
    name = "pydoc-topics" if path is None else Path(path).name
    vocab = "".join(sorted(set(text)))
    if len(vocab) > MAX_VOCAB:
        raise DataError(
            f"{name} has {len(vocab):,} distinct characters, more than the {MAX_VOCAB:,} a character "
            f"model's vocabulary holds here; use a text in fewer scripts"
        )
    ids = encode(text, vocab)
    split = int(len(ids) * (1 - VAL_FRACTION))
    return TextCorpus(name, vocab, ids[:split], ids[split:])


def encode(text: str, vocab: str) -> np.ndarray:
    """Characters -> ids ``(len(text),)`` int32; characters outside ``vocab`` are an error."""
    index = {c: i for i, c in enumerate(vocab)}
    missing = sorted({c for c in text if c not in index})
    if missing:
        shown = ", ".join(repr(c) for c in missing[:10])
        raise DiptychError(
            f"{len(missing)} character(s) not in the model's vocabulary: {shown}; "
            f"use only characters the model was trained on ({len(vocab)} of them)"
        )
    return np.fromiter((index[c] for c in text), dtype=np.int32, count=len(text))


def decode(ids, vocab: str) -> str:
    return "".join(vocab[i] for i in ids)


def windows(ids: np.ndarray, streams: int, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and next-character targets, both ``(W * streams, seq_len)`` int32, window-major."""
    per = (len(ids) - 1) // streams  # characters per stream (one extra for the last target)
    count = per // seq_len  # W: windows per stream
    if count == 0:
        raise DiptychError(
            f"{len(ids):,} characters are too few for {streams} streams of {seq_len}-character windows "
            f"(they need {streams * seq_len + 1:,}); use a longer text or a smaller --batch-size"
        )
    starts = np.arange(streams) * per  # (B,)
    offsets = starts[None, :, None] + np.arange(count)[:, None, None] * seq_len + np.arange(seq_len)  # (W, B, T)
    x = ids[offsets].reshape(-1, seq_len)
    y = ids[offsets + 1].reshape(-1, seq_len)
    return x, y


def unigram_bpc(train: np.ndarray, val: np.ndarray, vocab_size: int) -> float:
    """Bits per character on ``val`` of a model that knows only the training character
    frequencies (add-one smoothed): the baseline a language model has to beat."""
    counts = np.bincount(train, minlength=vocab_size).astype(np.float64) + 1.0
    logp = np.log2(counts / counts.sum())
    return float(-logp[val].mean())

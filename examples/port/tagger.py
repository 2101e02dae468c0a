"""An embedding + bidirectional LSTM sequence tagger (the PyTorch tutorial's ``LSTMTagger`` made
bidirectional), in both frameworks.

NNX: ``nnx.Embed``, ``nnx.Bidirectional`` of two ``nnx.RNN`` over ``diptych.port.nnx_layers.LSTMCell``
(torch's two biases; Flax's own cells have one, so they agree with torch on the forward pass and the
gradients but not after an optimizer step), and ``nnx.Linear``.
"""

from __future__ import annotations

VOCAB, EMBED, HIDDEN, TAGS = 20, 8, 12, 5


def torch_model():
    from torch import nn

    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(VOCAB, EMBED)
            self.lstm = nn.LSTM(EMBED, HIDDEN, batch_first=True, bidirectional=True)
            self.out = nn.Linear(2 * HIDDEN, TAGS)

        def forward(self, ids):  # (B, T) int
            h, _ = self.lstm(self.embed(ids))  # (B, T, 2H)
            return self.out(h)  # (B, T, tags)

    return Tagger()


def nnx_model(rngs, cell=None):
    from flax import nnx

    from diptych.port.nnx_layers import LSTMCell

    cell = cell or LSTMCell

    class Tagger(nnx.Module):
        def __init__(self, rngs):
            self.embed = nnx.Embed(VOCAB, EMBED, rngs=rngs)
            self.lstm = nnx.Bidirectional(
                nnx.RNN(cell(EMBED, HIDDEN, rngs=rngs)), nnx.RNN(cell(EMBED, HIDDEN, rngs=rngs))
            )
            self.out = nnx.Linear(2 * HIDDEN, TAGS, rngs=rngs)

        def __call__(self, ids):  # (B, T) int
            return self.out(self.lstm(self.embed(ids)))  # (B, T, tags)

    return Tagger(rngs)

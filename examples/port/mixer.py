"""An MLP-Mixer (Tolstikhin et al. 2021) in the usual PyTorch form: a strided-conv stem, blocks that mix
tokens (an MLP across the patch axis, reached by ``transpose(1, 2)``) and then channels, each behind a
LayerNorm with a residual, global average pooling over the tokens and a linear head.

Torch only: ``diptych port translate examples/port/mixer.py:torch_model --input 2,3,16,16 --train --steps 10``
writes its Flax NNX twin.
"""

from __future__ import annotations

from torch import nn

INPUT = (2, 3, 16, 16)


class MlpBlock(nn.Module):
    def __init__(self, dim, hidden_dim):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class MixerBlock(nn.Module):
    def __init__(self, num_tokens, dim, tokens_hidden, channels_hidden):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.token_mixing = MlpBlock(num_tokens, tokens_hidden)
        self.norm2 = nn.LayerNorm(dim)
        self.channel_mixing = MlpBlock(dim, channels_hidden)

    def forward(self, x):  # (B, S, C)
        y = self.norm1(x).transpose(1, 2)  # (B, C, S): mix across the patches
        x = x + self.token_mixing(y).transpose(1, 2)
        return x + self.channel_mixing(self.norm2(x))


class MlpMixer(nn.Module):
    def __init__(
        self, num_classes=10, image_size=16, patch_size=4, dim=32, depth=2, tokens_hidden=24, channels_hidden=64
    ):
        super().__init__()
        num_tokens = (image_size // patch_size) ** 2
        self.stem = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)
        self.blocks = nn.Sequential(
            *[MixerBlock(num_tokens, dim, tokens_hidden, channels_hidden) for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.stem(x)  # (B, C, H/p, W/p)
        x = x.flatten(2).transpose(1, 2)  # (B, S, C)
        x = self.blocks(x)
        x = self.norm(x)
        return self.head(x.mean(dim=1))  # (B, classes)


def torch_model():
    return MlpMixer()

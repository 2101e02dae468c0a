"""A 1-D convolutional audio classifier on raw waveforms, in the style of the M5 net (Dai et al. 2017) and
the small keyword-spotting nets built on it: a wide strided first convolution, residual blocks of dilated
``Conv1d`` (``padding="same"``) with ``BatchNorm1d``, SiLU and ``Dropout``, max pooling, global average
pooling and a linear head.

Torch only: ``diptych port translate examples/port/audio_cnn.py:torch_model --input 4,1,400 --train --steps 10``
writes its Flax NNX twin.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

INPUT = (4, 1, 400)  # (B, 1, samples)


class ResidualBlock(nn.Module):
    def __init__(self, channels, dilation, dropout=0.1):
        super().__init__()
        self.conv1 = nn.Conv1d(channels, channels, 3, padding="same", dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm1d(channels)
        self.conv2 = nn.Conv1d(channels, channels, 3, padding="same", dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm1d(channels)
        self.act = nn.SiLU()
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        y = self.drop(self.act(self.bn1(self.conv1(x))))
        y = self.bn2(self.conv2(y))
        return self.act(x + y)


class AudioCNN(nn.Module):
    def __init__(self, n_classes=10, channels=16, dilations=(1, 2, 4), dropout=0.1):
        super().__init__()
        self.conv1 = nn.Conv1d(1, channels, kernel_size=40, stride=8, padding=16)
        self.bn1 = nn.BatchNorm1d(channels)
        self.pool = nn.MaxPool1d(2)
        self.blocks = nn.Sequential(*[ResidualBlock(channels, d, dropout) for d in dilations])
        self.conv2 = nn.Conv1d(channels, 2 * channels, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm1d(2 * channels)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(2 * channels, n_classes)

    def forward(self, x):  # (B, 1, samples)
        x = self.pool(F.silu(self.bn1(self.conv1(x))))
        x = self.blocks(x)
        x = self.pool(F.silu(self.bn2(self.conv2(x))))
        x = F.adaptive_avg_pool1d(x, 1).squeeze(-1)  # (B, C)
        return self.fc(self.dropout(x))


def torch_model():
    return AudioCNN()

"""PyTorch models for the neutral specs in :mod:`diptych.specs`.

Attribute names match the canonical weight names (``conv1``, ``fc1``, ...), so
``model.state_dict()`` *is* the canonical weights dict. Initialization is PyTorch's default
(Kaiming-uniform weights, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` biases); the JAX twin draws
from the same distributions.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from diptych.backends.torch import transformer
from diptych.backends.torch.ops import max_pool
from diptych.specs import CharLMSpec, CNNSpec, CRNNSpec, MLPSpec, ModelSpec, RNNSpec


def add_head(module: nn.Module, dims: list[int]) -> None:
    """Give ``module`` the fully connected layers ``fc1 .. fcN`` of the chain ``dims`` (canonical names)."""
    module.num_fc = len(dims) - 1
    for j, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:]), start=1):
        setattr(module, f"fc{j}", nn.Linear(fan_in, fan_out))


def run_head(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``(B, D)`` -> Linear -> ReLU -> ... -> Linear -> ``(B, classes)``."""
    for j in range(1, module.num_fc + 1):
        x = getattr(module, f"fc{j}")(x)
        if j < module.num_fc:
            x = F.relu(x)
    return x


class MLP(nn.Module):
    def __init__(self, spec: MLPSpec):
        super().__init__()
        add_head(self, [spec.in_features, *spec.hidden, spec.num_classes])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run_head(self, x.flatten(1))  # (B, D) -> (B, classes)


def add_convs(module: nn.Module, spec: CNNSpec) -> None:
    """Give ``module`` the layers ``conv1, conv2, ...`` of ``spec`` (canonical names)."""
    conv = nn.Conv2d if spec.dims == 2 else nn.Conv1d
    cin = spec.in_channels
    for i, c in enumerate(spec.convs, start=1):
        setattr(module, f"conv{i}", conv(cin, c.out_channels, c.kernel, stride=c.stride, padding=c.padding))
        cin = c.out_channels


def run_convs(module: nn.Module, spec: CNNSpec, x: torch.Tensor) -> torch.Tensor:
    """``(B, H, W)`` or ``(B, L)`` (one channel) or ``(B, C, H, W)`` -> conv -> ReLU [-> max pool] per layer
    -> ``(B, C', H', W')``.

    The ReLU is applied after the pool, as in the JAX twin: max and ReLU commute, and so do their
    gradients (the first maximum of a window is the first maximum after ReLU whenever it is positive;
    otherwise both gradients are zero), so this is the same function with a p*p times smaller ReLU and
    ReLU backward (mnist-cnn: 1.10x the training steps per second on 2 cores).
    """
    x = x.unsqueeze(1) if x.dim() == spec.dims + 1 else x  # (B, C, H, W) or (B, C, L)
    for i, c in enumerate(spec.convs, start=1):
        x = getattr(module, f"conv{i}")(x)  # (B, C, H', W')
        if c.pool > 1:
            x = max_pool(x, c.pool)  # (B, C, H'/p, W'/p)
        x = F.relu(x)
    return x


class ConvNet(nn.Module):
    """Conv stack (1-D or 2-D) -> flatten (C, H, W) -> MLP head."""

    def __init__(self, spec: CNNSpec):
        super().__init__()
        self.spec = spec
        add_convs(self, spec)
        add_head(self, [spec.flat_features(), *spec.hidden, spec.num_classes])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = run_convs(self, self.spec, x)  # (B, C, H', W')
        return run_head(self, x.flatten(1))  # (B, C*H*W), channel-major: the canonical order


RECURRENT = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RecurrentNet(nn.Module):
    """PyTorch's fused ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` (batch-first) -> last hidden state -> Linear."""

    def __init__(self, spec: RNNSpec):
        super().__init__()
        self.spec = self.rnn_spec = spec
        self.rnn = RECURRENT[spec.cell](
            spec.input_size, spec.hidden, num_layers=spec.num_layers, batch_first=True, bidirectional=spec.bidirectional
        )
        self.fc1 = nn.Linear(spec.hidden * len(spec.directions()), spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = self.rnn_spec
        x = x.reshape(x.shape[0], spec.seq_len, spec.input_size)  # (B, T, F)
        _, h_n = self.rnn(x)  # (layers * D, B, H); an LSTM returns (h_n, c_n)
        h_n = h_n[0] if isinstance(h_n, tuple) else h_n
        last = torch.cat([h_n[-2], h_n[-1]], dim=-1) if spec.bidirectional else h_n[-1]  # (B, D*H)
        return self.fc1(last)  # (B, classes)


class CharLM(nn.Module):
    """Embedding -> fused ``nn.LSTM``/``nn.GRU``/``nn.RNN`` -> Linear at every step.

    ``forward(x, state)`` takes ids ``(B, T)`` and the recurrent state of the previous window
    (``None`` for zeros) and returns next-character logits ``(B, T, V)`` and the new state, which
    the trainer detaches and feeds back in: truncated backprop through time.
    """

    def __init__(self, spec: CharLMSpec):
        super().__init__()
        self.embed = nn.Embedding(spec.vocab, spec.embed)
        self.rnn = RECURRENT[spec.cell](spec.embed, spec.hidden, num_layers=spec.num_layers, batch_first=True)
        self.fc1 = nn.Linear(spec.hidden, spec.vocab)

    def forward(self, x: torch.Tensor, state=None):
        h, state = self.rnn(self.embed(x.long()), state)  # (B, T, H); state (L, B, H) or a pair of them
        return self.fc1(h), state  # (B, T, V)


class CRNN(RecurrentNet):
    """2-D conv stack over a spectrogram, then the recurrent net over its time axis."""

    def __init__(self, spec: CRNNSpec):
        super().__init__(spec.rnn_spec())
        self.spec, self.conv_spec = spec, spec.conv_spec()
        add_convs(self, self.conv_spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = run_convs(self, self.conv_spec, x)  # (B, C, H', W'): W' is time
        x = x.permute(0, 3, 1, 2).flatten(1)  # (B, W' * C * H'): step t holds (C, H') channel-major
        return super().forward(x)  # (B, classes)


MODELS = {
    "mlp": MLP,
    "cnn": ConvNet,
    "rnn": RecurrentNet,
    "charlm": CharLM,
    "crnn": CRNN,
    "gpt": transformer.GPT,
    "vit": transformer.ViT,
}  # by spec.kind


def build_model(spec: ModelSpec, seed: int = 0) -> nn.Module:
    """Build the twin of ``spec`` with weights drawn from a generator seeded by ``seed``."""
    torch.manual_seed(seed)
    return MODELS[spec.kind](spec)


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

"""Layers seen the same way on both sides: a :class:`Unit` per weight-bearing layer (neutral)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

KINDS = (
    "linear",
    "conv",
    "conv_transpose",
    "batchnorm",
    "layernorm",
    "groupnorm",
    "rmsnorm",
    "embed",
    "lstm",
    "gru",
    "rnn",
    "mha",
    "param",
)


@dataclass
class Unit:
    """One layer: ``name`` (torch: ``features.0``, ``lstm.l0_reverse``; NNX: ``blocks.0.conv``),
    ``module`` (the module whose call produces the layer's activation), ``kind`` (see :data:`KINDS`),
    ``keys`` (local tensor name -> the framework's key: a state_dict key or an NNX path tuple),
    ``shapes`` (local name -> shape) and ``config`` (hyper-parameters used by rules and hints)."""

    name: str
    module: str
    kind: str
    cls: str
    keys: dict = field(default_factory=dict)
    shapes: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)

    def describe(self) -> str:
        shapes = ", ".join(f"{k} {tuple(s)}" for k, s in self.shapes.items())
        return f"{self.name!r} ({self.cls}: {shapes})"


def natural_key(name: str) -> list:
    """Sort key: numbers as numbers, a forward RNN before a backward one (NNX sorts attributes by name)."""
    name = name.replace("forward", "0fwd").replace("backward", "1bwd")
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name) if t]


def loose(name: str) -> str:
    """A name with container tokens dropped: ``block.layers.0.conv_1`` -> ``block.0.conv1``."""
    parts = [p for p in name.lower().split(".") if p not in ("layers", "layer_list", "modules", "sequential")]
    return ".".join(parts).replace("_", "")

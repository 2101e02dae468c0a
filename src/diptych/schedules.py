r"""Learning-rate schedules, defined once as maths.

Both twins implement exactly these curves: torch through ``torch.optim.lr_scheduler.LambdaLR``
with :func:`lr_factor`, JAX through the equivalent optax schedule. ``t`` counts optimizer
steps from 0 and ``T`` is the total number of steps.

* ``constant``: :math:`\eta_t = \eta`
* ``cosine``:   :math:`\eta_t = \eta \cdot \tfrac12 (1 + \cos(\pi t / T))`
* ``onecycle``: linear warm-up from 0 over :math:`W = \lfloor fT \rfloor` steps, then cosine to 0:
  :math:`\eta_t = \eta\, t / W` for :math:`t < W`, else
  :math:`\eta \cdot \tfrac12 (1 + \cos(\pi (t - W) / (T - W)))`.

    >>> round(lr_factor("onecycle", 5, total_steps=100, warmup_fraction=0.1), 3)
    0.5
"""

from __future__ import annotations

import math


def warmup_steps(total_steps: int, warmup_fraction: float) -> int:
    return int(total_steps * warmup_fraction)


def lr_factor(schedule: str, step: int, total_steps: int, warmup_fraction: float = 0.0) -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (0-based)."""
    if schedule == "constant":
        return 1.0
    warm = warmup_steps(total_steps, warmup_fraction) if schedule == "onecycle" else 0
    if step < warm:
        return step / warm
    decay = max(total_steps - warm, 1)
    progress = min(step - warm, decay) / decay
    return 0.5 * (1.0 + math.cos(math.pi * progress))

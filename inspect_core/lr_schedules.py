"""Learning-rate schedules as multipliers of the peak rate, for ``torch.optim.lr_scheduler.LambdaLR``."""

from __future__ import annotations

import math
from collections.abc import Callable

SCHEDULES = ("constant-then-anneal", "linear", "cosine")


def lr_multiplier(schedule: str, total_steps: int, warmup_steps: int = 0, anneal_fraction: float = 0.2) -> Callable[[int], float]:
    """Linear warmup, then:

    - ``constant-then-anneal``: hold the peak, then anneal linearly to zero over the last
      ``anneal_fraction`` of the steps (the seed project's schedule);
    - ``linear``: decay linearly to zero;
    - ``cosine``: half-cosine to zero.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; expected one of {', '.join(SCHEDULES)}")
    total_steps = max(total_steps, 1)

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant-then-anneal":
            anneal_start = total_steps * (1 - anneal_fraction)
            return 1.0 if step < anneal_start else max(0.0, (total_steps - step) / max(total_steps - anneal_start, 1))
        progress = min(1.0, (step - warmup_steps) / max(total_steps - warmup_steps, 1))
        return 1.0 - progress if schedule == "linear" else 0.5 * (1 + math.cos(math.pi * progress))

    return multiplier

"""Learning-rate schedules: multipliers of the peak rate, run by ``torch.optim.lr_scheduler.LambdaLR`` for every loop.

Why not transformers' ``get_wsd_schedule`` (warmup-stable-decay) for ``constant-then-anneal``? It
matches it without warmup, but its warmup starts at 0 (step / warmup) where this one starts at
1 / warmup ((step + 1) / warmup) and reaches the peak a step earlier, and its stable phase must be a
whole number of steps while the anneal here starts at ``total * (1 - anneal_fraction)`` exactly;
``tests/training/test_lr_schedules.py`` shows both. Switching would change every recipe's LR curve,
so both fine-tuning and pretraining keep this one.
"""

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


def clocked(multiplier: Callable[[int], float], total_steps: int, spent: Callable[[], float]) -> Callable[[int], float]:
    """``multiplier`` at whichever is further along: the step, or the share of a time limit ``spent()`` (0..1).

    A run with a time limit then follows whichever runs out first, steps or minutes, and a stopped
    run still ends annealed instead of cut off at the peak rate.
    """

    def at(step: int) -> float:
        return multiplier(min(max(step, int(spent() * total_steps)), total_steps - 1))

    return at

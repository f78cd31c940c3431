"""Which epoch becomes ``best/``: a rule that still chooses well on a validation split of a few images.

Why: on 6 validation images mAP@50 is coarse and often exactly 0 for the first epochs. With the old
rule (mAP@50 alone, first maximum kept) a run whose mAP stayed 0 until the last epoch, or tied at 0
throughout, kept epoch 1: ``best/`` scored 0.00 on the test split where ``latest/`` scored 0.08
(issue 15, real fabric). The rule now:

1. the higher validation mAP@50 wins;
2. at equal mAP@50 (equal to 1e-9), the lower validation loss wins: it keeps moving while mAP is
   stuck, and it measures every validation image, not only those the model already finds. Losses are
   compared to 4 decimals, so float noise (a 1e-12 learning rate, bf16 rounding) is a tie;
3. what is still tied goes to the **later** epoch: it has seen more data, and with the
   constant-then-anneal schedule it is the annealed one.

Without validation objects the key is the validation loss alone, without a validation split the
training loss; ties again go to the later epoch. Early stopping counts only strict gains of this key
(:func:`inspect_core.training.loop.run_loop`), so ties move ``best/`` without resetting the patience.
"""

from __future__ import annotations

import math

SELECTION_RULE = "valid map50, then valid loss (4 decimals), ties to the later epoch"
_MAP_DECIMALS = 9
_LOSS_DECIMALS = 4


def _finite(value: float | None, missing: float) -> float:
    return missing if value is None or math.isnan(value) else value


def selection_key(map50: float | None, loss: float | None) -> tuple[float, ...]:
    """The comparable key of one evaluation: higher is better; ``map50`` None when the split has no objects.

    A NaN mAP or loss (a broken evaluation) ranks below every real value.
    """
    neg_loss = -round(_finite(loss, math.inf), _LOSS_DECIMALS)
    if map50 is None:
        return (neg_loss,)
    return (round(_finite(map50, -math.inf), _MAP_DECIMALS), neg_loss)


def later_wins(candidate: tuple[float, ...], best: tuple[float, ...]) -> bool:
    """``candidate`` (the later evaluation) replaces ``best`` unless it is strictly worse: ties go to the later epoch."""
    return not candidate < best

"""Which epoch becomes best/: scripted validation metrics through the shared loop (no model needed)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from inspect_core.training.loop import LoopHooks, LoopSettings, LoopState, StopReason, run_loop
from inspect_core.training.selection import later_wins, selection_key


def _best_epoch(scripted: list[tuple[float | None, float]], patience: int | None = None) -> LoopState:
    """Run one-batch epochs whose evaluations return the scripted (valid mAP@50, valid loss) pairs."""
    model = nn.Linear(1, 1, bias=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _k: 1.0)
    hooks = LoopHooks(
        batches=lambda _s: [torch.ones(1, 1)],
        loss=lambda x, _s: model(x).sum() * 0,
        evaluate=lambda state: selection_key(*scripted[state.epoch]),
        is_better=later_wins,
    )
    settings = LoopSettings(max_epochs=len(scripted), early_stopping_patience=patience)
    return run_loop([model], optimizer, scheduler, hooks, settings, device=torch.device("cpu"))


def test_a_tie_goes_to_the_later_epoch() -> None:
    # The run: mAP@50 tied at 0 (same loss to 4 decimals) kept epoch 1.
    assert _best_epoch([(0.0, 2.0), (0.0, 2.0), (0.0, 2.00001)]).best_at == 3
    assert _best_epoch([(0.08, 1.5), (0.0, 1.2), (0.08, 1.5)]).best_at == 3


def test_loss_breaks_map_ties_and_map_comes_first() -> None:
    assert _best_epoch([(0.0, 2.0), (0.0, 1.5), (0.0, 1.7)]).best_at == 2  # equal mAP: the lower loss
    assert _best_epoch([(0.2, 3.0), (0.1, 0.5), (0.1, 0.4)]).best_at == 1  # higher mAP wins whatever the loss
    assert _best_epoch([(0.1, 1.0), (0.3, 2.0), (0.3, 1.9), (0.25, 0.1)]).best_at == 3


def test_without_validation_objects_the_loss_alone_decides() -> None:
    assert _best_epoch([(None, 2.0), (None, 1.0), (None, 1.0), (None, 1.1)]).best_at == 3


def test_a_broken_evaluation_never_wins() -> None:
    assert _best_epoch([(0.1, 1.0), (math.nan, 0.5), (0.1, math.nan)]).best_at == 1


def test_ties_move_best_but_do_not_reset_early_stopping() -> None:
    state = _best_epoch([(0.0, 2.0), (0.0, 2.0), (0.0, 2.0), (0.0, 2.0), (0.0, 1.0)], patience=2)
    assert state.stop_reason is StopReason.EARLY_STOPPING and state.best_at == 3 and state.epoch == 2


def test_selection_key_orders_like_the_rule() -> None:
    assert selection_key(0.5, 9.0) > selection_key(0.4, 0.1)
    assert selection_key(0.5, 1.0) > selection_key(0.5, 1.1)
    assert selection_key(0.5, 1.00001) == selection_key(0.5, 1.0)
    assert later_wins(selection_key(0.5, 1.0), selection_key(0.5, 1.0))
    assert not later_wins(selection_key(0.5, 1.1), selection_key(0.5, 1.0))
    assert selection_key(None, 1.0) == pytest.approx((-1.0,))

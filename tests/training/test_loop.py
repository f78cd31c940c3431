"""The shared training loop on a one-layer linear model, against hand-written SGD."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from inspect_core.training.loop import LoopHooks, LoopSettings, LoopState, StopReason, run_loop

X = torch.tensor([[1.0, 0.0, 2.0], [0.5, -1.0, 0.0], [0.0, 1.0, 1.0], [2.0, 1.0, -1.0], [1.0, 1.0, 1.0], [-1.0, 0.5, 0.5]])
Y = torch.tensor([[1.0], [0.0], [2.0], [-1.0], [0.5], [1.5]])
BATCHES = [(X[i : i + 2], Y[i : i + 2]) for i in range(0, 6, 2)]  # 3 batches an epoch


def _model() -> nn.Linear:
    model = nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.1, -0.2, 0.3]]))
    return model


def _mse(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], _state: LoopState) -> torch.Tensor:
    x, y = batch
    return ((model(x) - y) ** 2).mean()


def _grad(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """d/dw of mean((x w^T - y)^2), by hand."""
    return (2 / len(x)) * ((x @ w.T - y).T @ x)


def _run(model: nn.Module, settings: LoopSettings, batches=lambda _s: BATCHES, loss=None, **hooks) -> tuple[LoopState, list[float]]:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: 1 / (k + 1))
    seen_lrs: list[float] = []
    hooks = LoopHooks(batches=batches, loss=loss or (lambda b, s: _mse(model, b, s)), **hooks)
    user_batch_end = hooks.on_batch_end

    def batch_end(state: LoopState) -> None:
        seen_lrs.append(optimizer.param_groups[0]["lr"])
        if user_batch_end:
            user_batch_end(state)

    hooks.on_batch_end = batch_end
    return run_loop([model], optimizer, scheduler, hooks, settings), seen_lrs


def test_accumulated_steps_match_hand_written_sgd_and_callbacks_see_the_lr_each_step_used() -> None:
    model = _model()
    state, lrs = _run(model, LoopSettings(grad_accum=2, max_epochs=2, max_grad_norm=1e9))
    # Oracle: per epoch, one step on batches 1+2 (each loss / 2) and one on batch 3 alone (still / 2), LR 0.1 / (k + 1).
    w, k, expected_lrs = torch.tensor([[0.1, -0.2, 0.3]]), 0, []
    for _epoch in range(2):
        for window in ([0, 1], [2]):
            grad = sum(_grad(w, *BATCHES[i]) / 2 for i in window)
            lr = 0.1 / (k + 1)
            expected_lrs += [lr] * len(window)
            w, k = w - lr * grad, k + 1
    assert torch.allclose(model.weight.detach(), w, atol=1e-6)
    assert state.step == 4 and state.stop_reason is StopReason.EPOCHS_DONE
    assert lrs == pytest.approx(expected_lrs)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_loss_stops_before_the_step_and_names_it(bad: float) -> None:
    model, evaluated = _model(), []

    def loss(batch, state):
        value = _mse(model, batch, state)
        return value * bad if state.step == 2 else value  # the third batch breaks

    state, _lrs = _run(model, LoopSettings(max_epochs=3, max_grad_norm=1e9), loss=loss, evaluate=lambda s: evaluated.append(s.step))
    assert state.stop_reason is StopReason.NON_FINITE and state.stop_reason.diverged
    assert (state.non_finite.step, state.non_finite.epoch, state.non_finite.batch) == (3, 1, 3)
    assert str(state.non_finite.value) == str(bad) and "at step 3 (epoch 1, batch 3)" in state.non_finite.describe()
    assert evaluated == []  # the broken epoch is not scored
    w = torch.tensor([[0.1, -0.2, 0.3]])
    for k in range(2):  # the weights are those of the last finite step
        w = w - 0.1 / (k + 1) * _grad(w, *BATCHES[k])
    assert torch.allclose(model.weight.detach(), w, atol=1e-6)


def test_an_endless_stream_stops_at_max_steps_evaluating_every_n_steps_and_at_the_end() -> None:
    evaluated, progress = [], []
    stream = lambda _s: (BATCHES[i % 3] for i in itertools.count())  # noqa: E731
    state, _ = _run(_model(), LoopSettings(max_steps=5, eval_every_steps=2), batches=stream,
                    evaluate=lambda s: evaluated.append(s.step) or float(s.step),
                    on_batch_end=lambda s: progress.append(s.step))  # fmt: skip
    assert state.stop_reason is StopReason.MAX_STEPS and state.step == 5 and state.batches_in_epoch is None
    assert evaluated == [2, 4, 5] and progress == [1, 2, 3, 4, 5]
    assert state.best_metric == 5.0 and state.best_at == 5


def test_a_time_limit_stops_after_the_step_and_scores_it() -> None:
    evaluated = []
    state, _ = _run(_model(), LoopSettings(time_limit_s=0.0, eval_every_steps=100), evaluate=lambda s: evaluated.append(s.step) or 0.0)
    assert state.stop_reason is StopReason.TIME_LIMIT and state.step == 1 and evaluated == [1]


def test_early_stopping_counts_evaluations_without_a_gain() -> None:
    metrics = iter([0.5, 0.9, 0.9, 0.8, 1.0])
    improved_flags: list[bool] = []
    state, _ = _run(_model(), LoopSettings(max_epochs=10, early_stopping_patience=2), evaluate=lambda _s: next(metrics),
                    on_evaluated=lambda _s, improved: improved_flags.append(improved))  # fmt: skip
    assert state.stop_reason is StopReason.EARLY_STOPPING and state.epoch + 1 == 4
    assert improved_flags == [True, True, False, False] and state.best_metric == 0.9 and state.best_at == 2


def test_epochs_done_and_a_run_without_a_stop_rule_is_refused() -> None:
    evaluated = []
    state, _ = _run(_model(), LoopSettings(max_epochs=2), evaluate=lambda s: evaluated.append(s.epoch + 1) or 0.0)
    assert state.stop_reason is StopReason.EPOCHS_DONE and evaluated == [1, 2] and state.best_at == 1
    assert str(StopReason.EPOCHS_DONE) == "completed" and f"{StopReason.TIME_LIMIT}" == "time-limit"
    with pytest.raises(ValueError, match="stop rule"):
        _run(_model(), LoopSettings())

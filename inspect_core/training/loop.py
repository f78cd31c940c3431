"""The one training loop behind ``train`` (fine-tuning) and ``pretrain_tiny`` (the embedded model).

Both runs do the same thing step by step: draw a batch, compute a loss under the precision's
autocast, stop on a non-finite loss, accumulate gradients, clip, step the optimizer and the LR
scheduler, evaluate at a cadence, keep the best evaluation and stop on epochs, steps, time or early
stopping. Only a few things differ, and they come in as :class:`LoopHooks` (Ultralytics-style
callbacks, not a second copy of the loop): where batches come from (a dataset epoch or an endless
synthetic stream), what the loss is (the model's, or the sequence loss plus the auxiliary cell loss),
what an evaluation scores and what happens after it (checkpoints, logs).

Non-finite loss policy, for both runs: **stop, do not skip**, and report it as the typed stop reason
:attr:`StopReason.NON_FINITE` with a :class:`NonFiniteLoss` naming the step. A NaN or inf loss
almost always means the weights or the optimizer moments are already poisoned, or the LR is too high;
skipping the batch hides that and burns hours on a dead run. The optimizer does not step on that
batch, so the weights stay those of the last finite step, and the run's products (best checkpoint,
history) are still valid: the loop returns instead of raising, so callers keep them and decide
(the CLI exits non-zero, nightly retraining keeps the champion).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable, Sized
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import torch
from torch import nn

from inspect_core.model.precision import use_bf16


class StopReason(str, Enum):
    """Why a run ended; the value is the human-readable word written to JSON and printed (a str, so it compares to it)."""

    EPOCHS_DONE = "completed"
    MAX_STEPS = "max-steps"
    TIME_LIMIT = "time-limit"
    EARLY_STOPPING = "early-stopping"
    NON_FINITE = "non-finite loss"

    def __str__(self) -> str:
        return self.value

    @property
    def diverged(self) -> bool:
        """The run stopped because training broke, not by one of its own rules."""
        return self is StopReason.NON_FINITE


@dataclass(frozen=True)
class NonFiniteLoss:
    """Where the loss stopped being a number: ``step`` is the optimizer step it would have fed (1-based)."""

    step: int
    epoch: int
    batch: int
    value: float

    def describe(self) -> str:
        return f"loss {self.value} at step {self.step} (epoch {self.epoch}, batch {self.batch})"

    def as_dict(self) -> dict:
        return {"step": self.step, "epoch": self.epoch, "batch": self.batch, "value": str(self.value)}  # "nan"/"inf": valid JSON


@dataclass(frozen=True)
class LoopSettings:
    """When to step, and when to stop. ``eval_every_steps`` None evaluates at each epoch's end."""

    grad_accum: int = 1
    precision: str = "fp32"
    max_grad_norm: float = 1.0
    max_epochs: int | None = None
    max_steps: int | None = None
    time_limit_s: float | None = None
    eval_every_steps: int | None = None
    early_stopping_patience: int | None = None


@dataclass
class LoopState:
    """What the loop knows; hooks read it, and a resumed run starts from a restored one."""

    epoch: int = 0  # 0-based index of the current epoch
    step: int = 0  # optimizer steps done
    batch: int = 0  # batches done in the current epoch
    batches_in_epoch: int | None = None  # None for an endless stream
    epoch_loss_sum: float = 0.0
    last_loss: float | None = None
    best_metric: Any = None  # what ``evaluate`` returned for the best evaluation: a float, or a selection key
    best_at: int | None = None  # epoch (1-based) or step of the best evaluation
    stale_evaluations: int = 0  # evaluations since the best one
    last_evaluated_step: int | None = None
    stop_reason: StopReason | None = None
    non_finite: NonFiniteLoss | None = None
    started: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def epoch_loss(self) -> float:
        """Mean training loss over the current epoch's batches."""
        return self.epoch_loss_sum / max(self.batch, 1)


@dataclass
class LoopHooks:
    """What differs between runs. Only ``batches`` and ``loss`` are required.

    - ``batches(state)``: the current epoch's batches (sized), or an endless iterator;
    - ``loss(batch, state)``: the scalar loss of one batch, called under autocast;
    - ``evaluate(state)``: score the model, return the metric to maximise (None: nothing to compare);
    - ``on_epoch_start(state)``, ``on_batch_end(state)``: bookkeeping, progress bars;
    - ``on_evaluated(state, improved)``: after the best metric is updated: checkpoints, logs;
    - ``is_better(metric, best)``: whether an evaluation replaces the best one (default ``metric > best``).
      Early stopping still counts only strict gains (``metric > best``), so a rule that gives ties to
      the later evaluation (:func:`~inspect_core.training.selection.later_wins`) moves ``best/`` forward
      without resetting the patience;
    - ``should_stop(state)``: after every optimizer step and every evaluation, a reason to end the run
      there, or None (a time budget, :mod:`inspect_core.training.budget`).
    """

    batches: Callable[[LoopState], Iterable[Any]]
    loss: Callable[[Any, LoopState], torch.Tensor]
    evaluate: Callable[[LoopState], Any] | None = None
    on_epoch_start: Callable[[LoopState], None] | None = None
    on_batch_end: Callable[[LoopState], None] | None = None
    on_evaluated: Callable[[LoopState, bool], None] | None = None
    is_better: Callable[[Any, Any], bool] | None = None
    should_stop: Callable[[LoopState], StopReason | None] | None = None


def autocast(precision: str, device: torch.device) -> torch.autocast:
    """bf16 autocast where asked for, or on ``auto`` where the chip has bf16 units (CUDA, AMX or AVX512-BF16 CPUs); else fp32."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16(precision, device))


def run_loop(
    modules: Iterable[nn.Module],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    hooks: LoopHooks,
    settings: LoopSettings,
    state: LoopState | None = None,
    device: torch.device | None = None,
) -> LoopState:
    """Train until a stop rule fires; ``state.stop_reason`` says which.

    The scheduler moves after the step's callbacks, so a callback sees the LR the step used, and a
    clock-driven schedule (:func:`~inspect_core.training.schedules.clocked`) counts the time they took.
    """
    if settings.max_epochs is None and settings.max_steps is None and settings.time_limit_s is None:
        raise ValueError("the loop needs a stop rule: max_epochs, max_steps or time_limit_s")
    state = state or LoopState()
    modules = list(modules)
    device = device or next(modules[0].parameters()).device
    params = [p for group in optimizer.param_groups for p in group["params"]]
    epochs = range(state.epoch, settings.max_epochs) if settings.max_epochs is not None else itertools.count(state.epoch)
    for epoch in epochs:
        state.epoch, state.batch, state.epoch_loss_sum = epoch, 0, 0.0
        if hooks.on_epoch_start:
            hooks.on_epoch_start(state)
        batches = hooks.batches(state)
        state.batches_in_epoch = len(batches) if isinstance(batches, Sized) else None
        optimizer.zero_grad(set_to_none=True)
        for batch in batches:
            for module in modules:
                module.train()
            with autocast(settings.precision, device):
                loss = hooks.loss(batch, state)
            if not torch.isfinite(loss):
                state.stop_reason = StopReason.NON_FINITE
                state.non_finite = NonFiniteLoss(state.step + 1, epoch + 1, state.batch + 1, loss.item())
                return state
            (loss / settings.grad_accum).backward()
            state.last_loss = loss.item()
            state.epoch_loss_sum += state.last_loss
            state.batch += 1
            stepped = state.batch % settings.grad_accum == 0 or state.batch == state.batches_in_epoch
            if stepped:
                torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                state.step += 1
                state.stop_reason = _step_limit(state, settings) or (hooks.should_stop(state) if hooks.should_stop else None)
            if hooks.on_batch_end:
                hooks.on_batch_end(state)
            if stepped:
                due = settings.eval_every_steps is not None and state.step % settings.eval_every_steps == 0
                if due or state.stop_reason:
                    _evaluate(state, hooks, settings)
                scheduler.step()
            if state.stop_reason:
                return state
        if settings.eval_every_steps is None:
            _evaluate(state, hooks, settings)
        if not state.stop_reason and hooks.should_stop:
            state.stop_reason = hooks.should_stop(state)
        if state.stop_reason:
            return state
    state.stop_reason = StopReason.EPOCHS_DONE
    return state


def _step_limit(state: LoopState, settings: LoopSettings) -> StopReason | None:
    if settings.max_steps is not None and state.step >= settings.max_steps:
        return StopReason.MAX_STEPS
    if settings.time_limit_s is not None and state.elapsed() > settings.time_limit_s:
        return StopReason.TIME_LIMIT
    return None


def _evaluate(state: LoopState, hooks: LoopHooks, settings: LoopSettings) -> None:
    """Score the model, update the best metric, and stop early after ``patience`` evaluations without a gain."""
    if hooks.evaluate is None or state.last_evaluated_step == state.step:
        return  # a stop right at an epoch's end is scored once
    position = state.epoch + 1 if settings.eval_every_steps is None else state.step
    metric = hooks.evaluate(state)
    state.last_evaluated_step = state.step
    usable = metric is not None and not (isinstance(metric, float) and math.isnan(metric))
    better = hooks.is_better or (lambda new, best: new > best)
    improved = usable and (state.best_metric is None or better(metric, state.best_metric))
    gained = usable and (state.best_metric is None or metric > state.best_metric)
    if improved:
        state.best_metric, state.best_at = metric, position
    state.stale_evaluations = 0 if gained else state.stale_evaluations + 1
    if hooks.on_evaluated:
        hooks.on_evaluated(state, improved)
    patience = settings.early_stopping_patience
    if patience and state.stale_evaluations >= patience and state.stop_reason is None:
        state.stop_reason = StopReason.EARLY_STOPPING

"""``train.max_minutes``: fit a fine-tuning run into a time budget without losing its ending.

Why: a run cut off by a timer stops at the peak learning rate, before the anneal, and with the
``sequential`` task order before the later tasks (issue 15: a capped run on real fabric never reached
either). So the budget does not cut the run: it **shrinks the plan**. After a few optimizer steps
:class:`TimeBudget` knows the seconds per step, guesses the seconds per validation, and works out
how many whole epochs (steps plus their end-of-epoch evaluation) fit in what is left; the trainer
then re-plans the task order for that many epochs (every task still comes, in order) and the LR
schedule for that many steps (warmup, hold and anneal all scaled to the shorter run). After each
evaluation the plan is checked again with the measured times (medians, so one slow evaluation does
not decide): it may shrink at any time, and grow back (up to the recipe's epochs) at the first
evaluation (the guess of its cost is only a guess) and, with ``constant-then-anneal``, as long as
the run is in its constant phase, where a longer plan leaves the learning rate as it was. Why grow:
on a shared machine the step time swung from 0.3 s to 9 s within one real-fabric run, and a plan
frozen at a busy moment used 3 of its 8 minutes. When not even the current epoch fits, it is
shortened, keeping the same share of every task.

Two guards keep the run inside the budget when the estimates are off: the learning rate follows
whichever is further along, the step or the share of the budget spent (as
:func:`~inspect_core.training.schedules.clocked` does for pretraining), so a slow run still ends
annealed; and when one more step would leave no time for the final evaluation, the run stops there
(``time-limit``) and is evaluated. The budget covers the training loop (steps, evaluations and their
checkpoints), not model loading or the calibration after it. The plan aims at :data:`MARGIN` of the
budget, for jitter.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from inspect_core.training.loop import LoopState, StopReason
from inspect_core.training.schedules import lr_multiplier

MARGIN = 0.97  # share of the budget the plan fills
PROBE_STEPS = 3  # optimizer steps measured before the first plan
# Before the first evaluation its cost is guessed: greedy generation of a batch costs about this many
# training steps of a batch (tiny base, 2 CPU cores: 0.3 s a training step, ~1 s a generated batch).
EVAL_GUESS_STEPS_PER_BATCH = 3.0


def _now() -> float:
    return time.monotonic()


@dataclass(frozen=True)
class Plan:
    """How much of the run fits: ``epochs`` epochs, the last of them ``last_epoch_steps`` steps long."""

    epochs: int
    last_epoch_steps: int
    steps_per_epoch: int

    @property
    def total_steps(self) -> int:
        return (self.epochs - 1) * self.steps_per_epoch + self.last_epoch_steps


def plan_that_fits(
    remaining_s: float, step_s: float, eval_s: float, steps_per_epoch: int, epoch: int, steps_in_epoch: int, max_epochs: int
) -> Plan:
    """The longest plan, up to ``max_epochs``, whose rest fits in ``remaining_s`` seconds.

    ``epoch`` (0-based) is the current epoch, of which ``steps_in_epoch`` steps are done (at an epoch's
    end, pass the next epoch and 0). Every epoch costs its steps plus one evaluation. When the current
    epoch does not fit it is shortened (never below the steps done: the run then ends where it is).
    """
    step_s = max(step_s, 1e-9)
    finish_current = (steps_per_epoch - steps_in_epoch) * step_s + eval_s
    if remaining_s >= finish_current:
        more = int((remaining_s - finish_current) // (steps_per_epoch * step_s + eval_s))
        epochs = min(max_epochs, epoch + 1 + more)
        return Plan(max(epochs, epoch + 1), steps_per_epoch, steps_per_epoch)
    if epoch > 0 and steps_in_epoch == 0 and remaining_s < step_s + eval_s:
        return Plan(epoch, steps_per_epoch, steps_per_epoch)  # at an epoch's end with no room for another step: done
    fitting = steps_in_epoch + max(0, int((remaining_s - eval_s) // step_s))
    return Plan(epoch + 1, max(1, min(steps_per_epoch, fitting)), steps_per_epoch)


@dataclass
class TimeBudget:
    """Measures a run and keeps its plan inside ``max_minutes``; see the module docstring.

    ``clock`` is injectable (a fake clock in the tests); ``eval_batches`` sizes the guess of an
    evaluation's cost before the first one is measured.
    """

    max_minutes: float
    epochs: int
    steps_per_epoch: int
    eval_batches: int = 1
    grow_until: float = 0.0  # the plan may grow while the steps done are below this share of it (constant phase)
    clock: Callable[[], float] = field(default_factory=lambda: _now)  # looked up when made: tests put a fake clock in
    plan: Plan = field(init=False)
    step_s: float | None = None
    eval_s: float | None = None
    planned: bool = False
    replans: list[dict] = field(default_factory=list)
    on_replan: Callable[[Plan], None] | None = None  # the trainer re-plans its task order and epochs
    _started: float = field(init=False)
    _loop_started: float = field(init=False)
    _checked_step: int | None = field(default=None, init=False)
    _last_step_at: float | None = field(default=None, init=False)
    _intervals: list[float] = field(default_factory=list, init=False)
    _evaluations: list[float] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.plan = Plan(self.epochs, self.steps_per_epoch, self.steps_per_epoch)
        self._loop_started = self._started = self.clock()

    @property
    def budget_s(self) -> float:
        return self.max_minutes * 60

    def spent_s(self) -> float:
        return self.clock() - self._started

    def spent_fraction(self) -> float:
        return min(1.0, self.spent_s() / self.budget_s)

    def multiplier(self, schedule: str, warmup_ratio: float, anneal_fraction: float) -> Callable[[int], float]:
        """The LR multiplier of the current plan, at whichever is further along: the step or the budget spent."""

        def at(step: int) -> float:
            total = self.plan.total_steps
            scheduled = lr_multiplier(schedule, total, int(warmup_ratio * total), anneal_fraction)
            return scheduled(min(max(step, int(self.spent_fraction() * total)), total - 1))

        return at

    def _eval_estimate(self) -> float:
        if self.eval_s is not None:
            return self.eval_s
        return EVAL_GUESS_STEPS_PER_BATCH * (self.step_s or 0.0) * self.eval_batches

    def _replan(self, state: LoopState, epoch: int, steps_in_epoch: int, may_grow: bool, reason: str) -> None:
        remaining = self.budget_s * MARGIN - self.spent_s()
        fitting = plan_that_fits(remaining, self.step_s or 0.0, self._eval_estimate(), self.steps_per_epoch, epoch, steps_in_epoch,
                                 self.epochs)  # fmt: skip
        if fitting == self.plan or (not may_grow and fitting.total_steps > self.plan.total_steps):
            return
        self.plan = fitting
        self.replans.append({"at_step": state.step, "reason": reason, "epochs": fitting.epochs, "steps": fitting.total_steps,
                             "seconds_per_step": _round(self.step_s), "seconds_per_evaluation": _round(self._eval_estimate())})  # fmt: skip
        if self.on_replan:
            self.on_replan(fitting)

    def check(self, state: LoopState) -> StopReason | None:
        """The loop's ``should_stop``: after a new optimizer step, measure and (once) plan; after an evaluation, is the plan done?"""
        if state.step != self._checked_step:
            self._checked_step = state.step
            return self._after_step(state)
        return StopReason.EPOCHS_DONE if self.planned and state.step >= self.plan.total_steps else None

    def _after_step(self, state: LoopState) -> StopReason | None:
        now = self.clock()
        if self._last_step_at is not None:
            self._intervals.append(now - self._last_step_at)
        elif self.step_s is None:
            self.step_s = now - self._loop_started  # the first step, warm-up included: a cautious first figure
        self._last_step_at = now
        if self._intervals:
            self.step_s = statistics.median(self._intervals[-10:])  # recent steps: the machine's load changes
        done_before_epoch = state.epoch * self.steps_per_epoch
        if not self.planned and state.step - done_before_epoch >= min(PROBE_STEPS, self.steps_per_epoch):
            self.planned = True
            self._replan(state, state.epoch, state.step - done_before_epoch, may_grow=False, reason="probe")
        if state.step >= self.plan.total_steps:
            return StopReason.EPOCHS_DONE
        if self.planned and self.spent_s() + (self.step_s or 0.0) + self._eval_estimate() > self.budget_s:
            return StopReason.TIME_LIMIT  # after another step the final evaluation would no longer fit: evaluate now
        return None

    def after_evaluation(self, state: LoopState, seconds: float) -> None:
        """Call after an end-of-epoch evaluation that took ``seconds``: re-plans the epochs to come."""
        first = self.eval_s is None
        self._evaluations.append(seconds)
        self.eval_s = statistics.median(self._evaluations[-5:])
        self._last_step_at = None  # the next interval would include the evaluation
        if self.planned and state.step < self.plan.total_steps:
            may_grow = first or state.step < self.grow_until * self.plan.total_steps
            self._replan(state, state.epoch + 1, 0, may_grow=may_grow, reason="evaluation")

    def state_dict(self) -> dict:
        return {"epochs": self.plan.epochs, "last_epoch_steps": self.plan.last_epoch_steps, "step_s": self.step_s, "eval_s": self.eval_s,
                "planned": self.planned, "spent_s": self.spent_s(), "replans": self.replans}  # fmt: skip

    def load_state_dict(self, saved: dict) -> None:
        self.plan = Plan(saved["epochs"], saved["last_epoch_steps"], self.steps_per_epoch)
        self.step_s, self.eval_s, self.replans = saved["step_s"], saved["eval_s"], list(saved["replans"])
        self.planned = False  # a resumed run measures its steps again (another process, maybe another machine) and may only shrink
        self._loop_started = self.clock()
        self._started = self._loop_started - saved["spent_s"]

    def record(self, state: LoopState) -> dict:
        """What the run's metrics.json says about the budget: the plan before and after, and where the run stopped."""
        return {
            "max_minutes": self.max_minutes,
            "steps_without_budget": self.epochs * self.steps_per_epoch,
            "epochs_without_budget": self.epochs,
            "planned_steps": self.plan.total_steps,
            "planned_epochs": self.plan.epochs,
            "last_epoch_steps": self.plan.last_epoch_steps,
            "seconds_per_step": _round(self.step_s),
            "seconds_per_evaluation": _round(self.eval_s),
            "replans": self.replans,
            "stopped_at_step": state.step,
            "stopped_in_epoch": state.epoch + 1,
            "used_minutes": round(self.spent_s() / 60, 2),
        }

    def describe(self, state: LoopState) -> str:
        plan = self.plan
        shrunk = plan.total_steps < self.epochs * self.steps_per_epoch
        what = f"schedule shrunk to {plan.total_steps} of {self.epochs * self.steps_per_epoch} steps" if shrunk else "full schedule fits"
        return f"time budget {self.max_minutes:g} min: {what} ({plan.epochs} epochs); stopped at step {state.step}, " \
               f"{self.spent_s() / 60:.1f} min used"  # fmt: skip


def _round(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else round(value, 3)

"""train.max_minutes: a scripted clock drives the shared loop; the plan shrinks so the anneal and the later tasks still come."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from inspect_core.data.florence_tasks import TASK_PROMPTS, TaskRecord
from inspect_core.training.budget import MARGIN, Plan, TimeBudget, plan_that_fits
from inspect_core.training.data import TaskOrderSampler, balanced_prefix
from inspect_core.training.loop import LoopHooks, LoopSettings, LoopState, StopReason, run_loop

STEP_S, EVAL_S = 2.0, 5.0  # scripted: every batch costs 2 s, every evaluation 5 s


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _records(per_task: int = 6) -> list[TaskRecord]:
    return [TaskRecord(f"{task}{i}.jpg", TASK_PROMPTS[task], "x") for task in ("od", "dense") for i in range(per_task)]


def _run(max_minutes: float, epochs: int, batch_size: int = 4, schedule: str = "constant-then-anneal", step_seconds=lambda _step: STEP_S):
    """The trainer's wiring in small: a task-ordered sampler, the budget's plan and LR multiplier, the budget as stop rule."""
    clock, records = FakeClock(), _records()
    sampler = TaskOrderSampler(records, "sequential", epochs, seed=0)
    steps_per_epoch = -(-len(records) // batch_size)
    grow_until = 0.75 if schedule == "constant-then-anneal" else 0.0  # as the trainer sets it (anneal_fraction 0.25)
    budget = TimeBudget(max_minutes, epochs, steps_per_epoch, eval_batches=1, clock=clock, grow_until=grow_until)
    budget.on_replan = lambda plan: sampler.replan(plan.epochs, min(len(records), plan.last_epoch_steps * batch_size))
    model = nn.Linear(1, 1, bias=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, budget.multiplier(schedule, 0.0, 0.25))
    seen_tasks: list[list[str]] = []
    lrs: list[float] = []
    started = {"at": 0.0}

    def batches(state: LoopState):
        seen_tasks.append([])
        chunk: list[int] = []
        for index in sampler:
            chunk.append(index)
            if len(chunk) == batch_size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def loss(chunk: list[int], state: LoopState) -> torch.Tensor:
        clock.now += step_seconds(state.step)
        seen_tasks[-1].extend(records[i].task for i in chunk)
        return (model(torch.ones(1, 1)) ** 2).mean()

    def evaluate(_state: LoopState) -> float:
        started["at"] = clock.now
        clock.now += EVAL_S
        return 0.0

    def state_batch_end(state: LoopState) -> None:
        state.batches_in_epoch = -(-len(sampler) // batch_size)
        lrs.append(optimizer.param_groups[0]["lr"])

    hooks = LoopHooks(
        batches=batches, loss=loss, evaluate=evaluate,
        on_epoch_start=lambda state: sampler.set_epoch(state.epoch),
        on_batch_end=state_batch_end,
        on_evaluated=lambda state, _improved: budget.after_evaluation(state, clock.now - started["at"]),
        should_stop=budget.check,
    )  # fmt: skip
    start = clock.now
    state = run_loop([model], optimizer, scheduler, hooks, LoopSettings(max_epochs=epochs, max_grad_norm=1e9), device=torch.device("cpu"))
    return state, budget, clock.now - start, seen_tasks, lrs


def test_the_plan_shrinks_to_fit_and_still_anneals_and_reaches_the_later_task() -> None:
    state, budget, used_s, seen_tasks, lrs = _run(max_minutes=1.0, epochs=100)
    # 12 records, batch 4: 3 steps (6 s) and one evaluation (5 s) an epoch: 5 epochs fit in 0.97 min.
    assert budget.plan == Plan(epochs=5, last_epoch_steps=3, steps_per_epoch=3)
    assert state.stop_reason is StopReason.EPOCHS_DONE and state.step == 15 and state.epoch == 4
    assert used_s <= 60.0 and used_s == 5 * (3 * STEP_S + EVAL_S)
    # The anneal ran: the last quarter of the 15 steps decays towards zero.
    peak = 0.1
    assert lrs[0] == pytest.approx(peak) and lrs[-1] < 0.35 * peak
    assert all(later <= earlier + 1e-12 for earlier, later in itertools.pairwise(lrs))
    # The sequential order was planned for 5 epochs, not 100: the dense block comes, last.
    assert seen_tasks[0][0] == "od" and seen_tasks[-1][-1] == "dense"
    assert "dense" in {task for epoch in seen_tasks for task in epoch}
    record = budget.record(state)
    assert record["planned_epochs"] == 5 and record["steps_without_budget"] == 300 and record["stopped_at_step"] == 15
    assert record["seconds_per_step"] == STEP_S and record["seconds_per_evaluation"] == EVAL_S
    assert [r["reason"] for r in record["replans"]] == ["probe", "evaluation"]  # the guessed evaluation, then the measured one


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_decaying_schedules_end_near_zero_within_the_budget(schedule: str) -> None:
    state, budget, used_s, _tasks, lrs = _run(max_minutes=1.0, epochs=100, schedule=schedule)
    assert state.stop_reason is StopReason.EPOCHS_DONE and used_s <= 60.0
    assert lrs[-1] < 0.2 * lrs[0]


def test_a_plan_made_on_a_busy_machine_grows_back_in_the_constant_phase() -> None:
    # The first epoch's steps take 6 s (another job was running), then 1 s: the plan must not stay at the first guess.
    state, budget, used_s, _tasks, lrs = _run(max_minutes=2.0, epochs=100, step_seconds=lambda step: 6.0 if step < 3 else 1.0)
    steps = [r["steps"] for r in budget.replans]
    assert steps[0] == 9 and max(steps) == steps[-1] > 2 * steps[0]  # shrunk at the probe, grown back after
    assert state.stop_reason is StopReason.EPOCHS_DONE and 0.85 * 120 <= used_s <= 120
    assert all(later <= earlier + 1e-12 for earlier, later in itertools.pairwise(lrs)) and lrs[-1] < 0.35 * lrs[0]


def test_a_budget_shorter_than_an_epoch_shortens_it_keeping_every_task() -> None:
    # 12 records in batches of 1: 12 steps (24 s) an epoch, more than a 0.25 min budget holds.
    state, budget, used_s, seen_tasks, _lrs = _run(max_minutes=0.25, epochs=3, batch_size=1)
    assert budget.plan.epochs == 1 and budget.plan.last_epoch_steps < 12
    assert state.stop_reason is StopReason.EPOCHS_DONE and state.step == budget.plan.last_epoch_steps
    assert used_s <= 15.0
    assert set(seen_tasks[0]) == {"od", "dense"}  # the shortened epoch still reaches the later task


def test_a_run_that_already_fits_keeps_its_plan() -> None:
    state, budget, used_s, _tasks, _lrs = _run(max_minutes=10.0, epochs=4)
    assert budget.plan == Plan(4, 3, 3) and state.step == 12 and state.stop_reason is StopReason.EPOCHS_DONE


def test_plan_that_fits_by_hand() -> None:
    # 100 s left, 2 s a step, 10 s an evaluation, 5 steps an epoch (20 s with its evaluation).
    assert plan_that_fits(100, 2, 10, 5, epoch=0, steps_in_epoch=3, max_epochs=50) == Plan(5, 5, 5)  # 14 s, then 4 x 20 s
    assert plan_that_fits(100, 2, 10, 5, epoch=0, steps_in_epoch=3, max_epochs=2) == Plan(2, 5, 5)  # capped by the recipe
    assert plan_that_fits(12, 2, 10, 5, epoch=0, steps_in_epoch=0, max_epochs=50) == Plan(1, 1, 5)  # one step and the evaluation
    assert plan_that_fits(5, 2, 10, 5, epoch=3, steps_in_epoch=0, max_epochs=50) == Plan(3, 5, 5)  # no room: done at 3 epochs
    assert MARGIN < 1


def test_balanced_prefix_keeps_every_task_in_order() -> None:
    items = list(range(10))
    tasks = ["od"] * 6 + ["dense"] * 3 + ["grounding"]
    kept = balanced_prefix(items, tasks, 5)
    assert kept == sorted(kept) and len(kept) == 5
    assert {tasks[i] for i in kept} == {"od", "dense", "grounding"}
    assert balanced_prefix(items, tasks, 20) == items


def test_replanning_the_sampler_keeps_what_the_current_epoch_drew() -> None:
    records = _records()
    sampler = TaskOrderSampler(records, "sequential", 10, seed=1)
    iterator = iter(sampler)
    drawn = [next(iterator) for _ in range(4)]
    sampler.replan(2, last_epoch_records=None)
    rest = list(iterator)
    assert len(sampler.plan) == 2 and drawn + rest == sampler.plan[0] and len(drawn + rest) == len(records)
    sampler.set_epoch(1)
    assert [records[i].task for i in sampler][-1] == "dense"

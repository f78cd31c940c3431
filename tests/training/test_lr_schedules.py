import pytest
import torch
from torch.optim.lr_scheduler import LambdaLR
from transformers import get_wsd_schedule

from inspect_core.training.schedules import clocked, lr_multiplier


def test_constant_then_anneal() -> None:
    f = lr_multiplier("constant-then-anneal", total_steps=100, warmup_steps=10, anneal_fraction=0.2)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(50) == 1.0 and f(79) == 1.0
    assert f(90) == pytest.approx(0.5) and f(100) == 0.0


def test_linear_and_cosine_reach_zero() -> None:
    linear = lr_multiplier("linear", 100)
    cosine = lr_multiplier("cosine", 100)
    assert linear(0) == 1.0 and linear(50) == pytest.approx(0.5) and linear(100) == 0.0
    assert cosine(0) == 1.0 and cosine(50) == pytest.approx(0.5) and cosine(100) == pytest.approx(0.0)


def test_unknown_schedule() -> None:
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_multiplier("step", 10)


def _lrs(make_scheduler, steps: int) -> list[float]:
    """The LR each optimizer step runs at, as the training loop steps the scheduler."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    scheduler = make_scheduler(optimizer)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_transformers_warmup_stable_decay_matches_only_without_warmup_so_constant_then_anneal_stays_ours() -> None:
    ours = lambda total, warmup, fraction: lambda opt: LambdaLR(opt, lr_multiplier("constant-then-anneal", total, warmup, fraction))  # noqa: E731
    # No warmup, a whole number of anneal steps: the same curve, step for step.
    wsd = lambda opt: get_wsd_schedule(opt, num_warmup_steps=0, num_decay_steps=20, num_training_steps=100, decay_type="linear")  # noqa: E731
    assert _lrs(ours(100, 0, 0.2), 100) == pytest.approx(_lrs(wsd, 100), abs=1e-12)
    # With warmup, WSD starts from 0 and peaks a step later than ours, which starts at 1/warmup.
    wsd = lambda opt: get_wsd_schedule(opt, num_warmup_steps=10, num_decay_steps=20, num_training_steps=100, decay_type="linear")  # noqa: E731
    with_warmup, theirs = _lrs(ours(100, 10, 0.2), 100), _lrs(wsd, 100)
    assert with_warmup[:2] == pytest.approx([0.1, 0.2]) and theirs[:2] == pytest.approx([0.0, 0.1])
    # A fractional anneal start (90 * 0.25 = 22.5 steps) has no whole-step WSD equivalent.
    fractional = _lrs(ours(90, 0, 0.25), 90)
    for decay in (22, 23):
        wsd = lambda opt, d=decay: get_wsd_schedule(opt, 0, d, num_training_steps=90, decay_type="linear")  # noqa: E731
        assert _lrs(wsd, 90) != pytest.approx(fractional, abs=1e-9)


def test_clocked_schedule_follows_whichever_of_steps_and_time_is_further_along() -> None:
    identity = lambda step: float(step)  # noqa: E731
    spent = {"share": 0.0}
    at = clocked(identity, 10, lambda: spent["share"])
    assert at(3) == 3.0  # no time spent: the step decides
    spent["share"] = 0.55
    assert at(3) == 5.0 and at(7) == 7.0  # 55% of the time: position 5 unless the step is further
    spent["share"] = 2.0
    assert at(3) == 9.0  # past the limit: the last step's rate, never beyond the schedule

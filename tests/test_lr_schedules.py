import pytest

from inspect_core.lr_schedules import lr_multiplier


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

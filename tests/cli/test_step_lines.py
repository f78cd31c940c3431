"""Where stderr is a log, long runs print plain ``step N/M`` lines: which steps get one (train and pretrain-tiny)."""

from __future__ import annotations

from inspect_core.cli.training import _step_line_due


def test_a_run_logs_its_first_step_each_tenth_and_its_last() -> None:
    logged: dict = {}
    assert [done for done in range(1, 101) if _step_line_due(done, 100, logged)] == [1, *range(10, 101, 10)]
    logged = {}
    assert [done for done in range(1, 24) if _step_line_due(done, 23, logged)] == [1, 3, 5, 7, 10, 12, 14, 17, 19, 21, 23]


def test_a_slow_run_also_logs_every_five_minutes_between_tenths() -> None:
    """10000 planned steps at 1 s a step: a tenth is 17 minutes apart, so the clock adds lines between them."""
    logged: dict = {}
    due = [done for done in range(1, 2001) if _step_line_due(done, 10_000, logged, minutes=done / 60)]
    assert due == [1, 301, 601, 901, 1000, 1300, 1600, 1900, 2000]

from collections import Counter

import pytest

from inspect_core.data.florence_tasks import TaskRecord
from inspect_core.data.task_mixing import epoch_plan, task_blocks

RECORDS = (
    [TaskRecord(f"{i}.jpg", "<OD>", "") for i in range(4)]
    + [TaskRecord(f"{i}.jpg", "<DENSE_REGION_CAPTION>", "") for i in range(4)]
    + [TaskRecord(f"{i}.jpg", "<CAPTION_TO_PHRASE_GROUNDING>fabric", "") for i in range(3)]
)


def _tasks(plan: list[list[int]]) -> list[list[str]]:
    return [[RECORDS[i].task for i in epoch] for epoch in plan]


def test_blocks_follow_task_order() -> None:
    assert [RECORDS[b[0]].task for b in task_blocks(RECORDS)] == ["od", "dense", "grounding"]


def test_interleaved_passes_the_three_blocks_every_epoch() -> None:
    plan = epoch_plan(RECORDS, "interleaved", epochs=3, seed=1)
    for tasks in _tasks(plan):
        assert tasks == ["od"] * 4 + ["dense"] * 4 + ["grounding"] * 3


def test_sequential_is_a_curriculum_over_the_whole_run() -> None:
    plan = epoch_plan(RECORDS, "sequential", epochs=3, seed=1)
    stream = [t for tasks in _tasks(plan) for t in tasks]
    assert stream == ["od"] * 12 + ["dense"] * 12 + ["grounding"] * 9
    assert [len(e) for e in plan] == [11, 11, 11]


@pytest.mark.parametrize("order", ["sequential", "interleaved"])
def test_every_record_is_seen_once_per_epoch_on_average_and_plans_are_seeded(order: str) -> None:
    plan = epoch_plan(RECORDS, order, epochs=4, seed=7)
    assert Counter(i for epoch in plan for i in epoch) == {i: 4 for i in range(len(RECORDS))}
    assert plan == epoch_plan(RECORDS, order, epochs=4, seed=7)
    assert plan != epoch_plan(RECORDS, order, epochs=4, seed=8)


def test_bad_order_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown order"):
        epoch_plan(RECORDS, "random", epochs=1)

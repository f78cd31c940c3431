"""The generalisation benchmark's diagnosis of a weak class: what its defects were called, and found at a looser IoU."""

from __future__ import annotations

import pytest

from inspect_core.data.annotations import DefectObject
from inspect_core.inference.detector import Detection
from inspect_core.training.evaluation import SplitDetections


@pytest.fixture(scope="module")
def bench(import_benchmark):
    return import_benchmark("base_generalisation")


def _records() -> SplitDetections:
    """Three knots and a hole: one knot called a hole (exact box), one called a knot with its 10 px box
    shifted 3 px right and down (IoU 49/151 = 0.32), one not seen at all; the hole found as a hole."""
    truth = [
        (DefectObject("knot", (10, 10, 20, 20)), DefectObject("hole", (50, 50, 70, 70))),
        (DefectObject("knot", (30, 30, 40, 40)), DefectObject("knot", (80, 80, 90, 90))),
    ]
    predictions = [
        [Detection("hole", (10, 10, 20, 20), 0.9), Detection("hole", (50, 50, 70, 70), 0.8)],
        [Detection("knot", (33, 33, 43, 43), 0.7)],
    ]
    return SplitDetections("test", ["hole", "knot"], truth, predictions)


def test_called_counts_what_each_true_class_was_named(bench) -> None:
    assert bench._called(_records()) == {"hole": {"hole": 1}, "knot": {"hole": 1, "missed": 2}}


def test_found_any_class_tells_a_mislocated_defect_from_a_missed_one(bench) -> None:
    found = bench._found_any_class(_records())
    assert found["knot"] == {"iou_0.5": round(1 / 3, 3), "iou_0.25": round(2 / 3, 3)}
    assert found["hole"] == {"iou_0.5": 1.0, "iou_0.25": 1.0}

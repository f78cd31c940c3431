import pytest

from inspect_core.data.annotations import DefectObject
from inspect_core.inference.detector import Detection
from inspect_core.training.metrics import detection_map

TRUTH = [[DefectObject("hole", (10, 10, 50, 50)), DefectObject("stain", (60, 60, 90, 90))], [DefectObject("hole", (0, 0, 20, 20))]]


def test_perfect_predictions_score_one() -> None:
    predictions = [[Detection(o.label, o.box, 0.9) for o in image] for image in TRUTH]
    result = detection_map(TRUTH, predictions, ["hole", "stain"])
    assert result.map50 == pytest.approx(1.0) and result.map50_95 == pytest.approx(1.0)
    assert result.per_class["hole"]["instances"] == 2


def test_confidences_rank_detections() -> None:
    """A confident false positive costs more AP than an unsure one: scores are used, not all-ones."""

    def predictions(false_positive_score: float) -> list[list[Detection]]:
        return [
            [Detection("hole", (10, 10, 50, 50), 0.9), Detection("stain", (60, 60, 90, 90), 0.8)],
            [Detection("hole", (0, 0, 20, 20), 0.5), Detection("hole", (100, 100, 120, 120), false_positive_score)],
        ]

    confident = detection_map(TRUTH, predictions(0.95), ["hole", "stain"])
    unsure = detection_map(TRUTH, predictions(0.1), ["hole", "stain"])
    assert confident.per_class["hole"]["ap50"] == pytest.approx(2 / 3, abs=0.01)
    assert unsure.per_class["hole"]["ap50"] == pytest.approx(1.0)
    assert confident.per_class["stain"]["ap50"] == pytest.approx(1.0)


def test_class_aware_and_loose_boxes() -> None:
    predictions = [[Detection("stain", (10, 10, 50, 50), 0.3), Detection("stain", (60, 60, 95, 95), 0.9)], []]
    result = detection_map(TRUTH, predictions, ["hole", "stain"])
    assert result.per_class["hole"]["ap50"] == 0.0  # right box, wrong class
    assert result.per_class["stain"]["ap50"] == pytest.approx(1.0)  # IoU 0.73 passes 0.5 ...
    assert result.per_class["stain"]["ap50_95"] < 0.6  # ... but not the stricter thresholds
    assert set(result.pr_curves) == {"hole", "stain"}


def test_no_ground_truth_is_an_error() -> None:
    with pytest.raises(ValueError, match="no ground-truth"):
        detection_map([[]], [[]], ["hole"])

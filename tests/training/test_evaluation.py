from pathlib import Path

import numpy as np
from transformers import AutoProcessor, Florence2ForConditionalGeneration

from inspect_core.data.annotations import DefectObject
from inspect_core.inference.detector import Detection
from inspect_core.training.evaluation import confusion_matrix, evaluate_split


def test_confusion_matrix_counts_matches_confusions_misses_and_false_alarms() -> None:
    truth = [(DefectObject("hole", (0, 0, 10, 10)), DefectObject("stain", (20, 20, 40, 40)), DefectObject("knot", (50, 50, 55, 55)))]
    predictions = [[
        Detection("hole", (0, 0, 10, 11), 0.9),  # correct
        Detection("hole", (20, 20, 40, 40), 0.8),  # stain called hole
        Detection("stain", (80, 80, 90, 90), 0.7),  # false alarm
    ]]  # fmt: skip
    matrix = confusion_matrix(truth, predictions, ["hole", "stain", "knot"])
    assert matrix[0, 0] == 1 and matrix[1, 0] == 1 and matrix[3, 1] == 1 and matrix[2, 3] == 1
    assert matrix.sum() == 4


def test_evaluate_split_reports_detection_text_metrics_and_plots(random_tiny_dir: Path, small_dataset: Path, tmp_path: Path) -> None:
    model = Florence2ForConditionalGeneration.from_pretrained(random_tiny_dir)
    processor = AutoProcessor.from_pretrained(random_tiny_dir)
    report = evaluate_split(model, processor, small_dataset, "test", batch_size=4, max_new_tokens=8, plots_dir=tmp_path)
    assert report.images == 2 and report.detection is not None
    assert 0.0 <= report.detection.map50 <= 1.0
    assert set(report.text) == {"dense", "grounding"}
    assert all(0.0 <= m["levenshtein_similarity"] <= 1.0 and m["cer"] >= 0 for m in report.text.values())
    assert [Path(p).name for p in report.plots] == ["confusion_test.png", "pr_curves_test.png"]
    assert all(Path(p).stat().st_size > 1000 for p in report.plots)
    assert np.isfinite(report.as_dict()["detection"]["map50"])

"""Calibration fitting (inspect_core.training.calibration): curves, ECE, thresholds, and a real training run.

Oracles: synthetic samples drawn from a known curve (the fit must recover it), hand-computed ECE and
PAV blocks, and a brute-force search over every candidate threshold counted with plain loops.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from inspect_core import pipeline
from inspect_core.config import (
    AugmentSection,
    CalibrationSection,
    DatasetSection,
    InspectConfig,
    LoraSection,
    ModelSection,
    SplitRatios,
    TrainSection,
)
from inspect_core.data.annotations import DefectObject
from inspect_core.inference.detector import Detection
from inspect_core.model.calibration import CALIBRATION_FILE, Curve, load_calibration, model_vocabulary
from inspect_core.training.calibration import (
    Samples,
    best_threshold,
    calibrated_scores,
    expected_calibration_error,
    fit_calibration,
    fit_isotonic,
    fit_platt,
    match_samples,
)
from inspect_core.training.evaluation import SplitDetections


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1 - p))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def _underconfident(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw scores of 0.05-0.4 whose boxes are right with probability sigmoid(2 logit(raw) + 3): like the tiny model's."""
    rng = np.random.default_rng(seed)
    raw = _sigmoid(rng.normal(-1.6, 0.7, n))
    return raw, rng.random(n) < _sigmoid(2 * _logit(raw) + 3)


# --- curves --------------------------------------------------------------------------------------------


def test_platt_recovers_the_curve_the_samples_were_drawn_from() -> None:
    raw, correct = _underconfident(20000, seed=1)
    curve = fit_platt(raw, correct)
    assert curve.method == "platt"
    assert curve.a == pytest.approx(2, abs=0.12) and curve.b == pytest.approx(3, abs=0.2)


def test_isotonic_recovers_a_monotone_curve_that_is_no_sigmoid() -> None:
    rng = np.random.default_rng(2)
    raw = rng.uniform(0, 1, 20000)
    truth = np.sqrt(raw)  # a logistic in logit(raw) cannot take this shape
    curve = fit_isotonic(raw, rng.random(raw.size) < truth)
    grid = np.linspace(0.1, 0.9, 17)
    fitted = np.array([curve(x) for x in grid])
    assert np.all(np.diff(fitted) >= 0)
    assert np.max(np.abs(fitted - np.sqrt(grid))) < 0.06


def test_isotonic_pools_adjacent_violators_as_by_hand() -> None:
    # sorted by raw: 0.1 wrong | 0.2 right, wrong | 0.3 right | 0.4 wrong | 0.5 right: 0.3 and 0.4 violate, pooled to 0.5
    raw = np.array([0.3, 0.1, 0.2, 0.5, 0.2, 0.4])
    correct = np.array([True, False, True, True, False, False])
    assert fit_isotonic(raw, correct).points == ((0.1, 0.0), (0.2, 0.5), (0.4, 0.5), (0.5, 1.0))


def test_platt_stays_finite_when_every_detection_is_right() -> None:
    curve = fit_platt(np.array([0.1, 0.2, 0.3]), np.array([True, True, True]))
    assert np.isfinite([curve.a, curve.b]).all()
    assert 0.5 < curve(0.2) < 0.95  # Platt's smoothed target for 3 of 3 right is 0.8


def test_expected_calibration_error_as_by_hand() -> None:
    confidence = np.array([0.05, 0.15, 0.15, 0.95])
    correct = np.array([False, True, False, True])
    # bins: [0, .1): |.05 - 0| x 1; [.1, .2): |.15 - .5| x 2; [.9, 1]: |.95 - 1| x 1  ->  (.05 + .7 + .05) / 4
    assert expected_calibration_error(confidence, correct, 10) == pytest.approx(0.2)
    assert expected_calibration_error(np.array([1.0]), np.array([True]), 10) == 0.0  # 1.0 falls in the last bin
    assert expected_calibration_error(np.array([]), np.array([], dtype=bool), 10) is None


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_ece_of_a_miscalibrated_set_drops_on_a_held_out_split(method: str) -> None:
    fit_raw, fit_correct = _underconfident(400, seed=3)
    held_raw, held_correct = _underconfident(400, seed=4)
    curve = fit_platt(fit_raw, fit_correct) if method == "platt" else fit_isotonic(fit_raw, fit_correct)
    before = expected_calibration_error(held_raw, held_correct, 10)
    after = expected_calibration_error(np.array([curve(r) for r in held_raw]), held_correct, 10)
    assert before > 0.2 and after < before / 2


# --- thresholds ----------------------------------------------------------------------------------------


def _brute_force(scores: list[float], correct: list[bool], ground_truth: int, target: float | None = None) -> float:
    """Try every score as a threshold, counting TP/FP/FN one detection at a time."""
    table = []
    for t in sorted(set(scores)):
        tp = sum(1 for s, c in zip(scores, correct) if s >= t and c)
        fp = sum(1 for s, c in zip(scores, correct) if s >= t and not c)
        fn = ground_truth - tp
        table.append((t, 2 * tp / (2 * tp + fp + fn), tp / (tp + fp)))
    if target is not None and any(p >= target for _t, _f, p in table):
        return min(t for t, _f, p in table if p >= target)
    best = max(f for _t, f, _p in table)
    return max(t for t, f, _p in table if f == best)


def test_threshold_is_the_best_f1_counting_missed_boxes() -> None:
    scores = [0.95, 0.9, 0.8, 0.7, 0.6, 0.4, 0.3]
    correct = [True, True, False, True, False, True, False]
    # 6 labelled boxes: at 0.7, 3 TP, 1 FP, 3 FN -> F1 0.6; at 0.4, 4 TP, 2 FP, 2 FN -> F1 0.667 (best)
    threshold, info = best_threshold(np.array(scores), np.array(correct), 6)
    assert threshold == 0.4 == _brute_force(scores, correct, 6)
    assert info["f1"] == pytest.approx(2 / 3) and info["precision"] == pytest.approx(4 / 6) and info["recall"] == pytest.approx(4 / 6)


def test_equal_f1_goes_to_the_higher_threshold() -> None:
    scores, correct = [0.9, 0.5, 0.2], [True, False, True]  # 2 boxes: F1 at 0.9 = 2/3, at 0.2 = 2*2/(3+2) = 0.8; at 0.5 0.5
    assert best_threshold(np.array(scores), np.array(correct), 2)[0] == 0.2
    scores, correct = [0.9, 0.6, 0.5, 0.2], [True, False, True, False]  # 3 boxes: 0.9 -> 0.5, 0.5 -> 4/7, 0.2 -> 0.5
    assert best_threshold(np.array(scores), np.array(correct), 3)[0] == 0.5 == _brute_force(scores, correct, 3)
    scores, correct = [0.8, 0.8, 0.4], [True, True, False]  # a tie in score is one candidate: 0.8 keeps both
    assert best_threshold(np.array(scores), np.array(correct), 2)[0] == 0.8


def test_target_precision_takes_the_lowest_threshold_reaching_it() -> None:
    scores = [0.95, 0.9, 0.8, 0.7, 0.6, 0.4, 0.3]
    correct = [True, True, False, True, False, True, False]
    threshold, info = best_threshold(np.array(scores), np.array(correct), 6, target_precision=0.75)
    assert threshold == 0.7 == _brute_force(scores, correct, 6, 0.75) and info["rule"] == "lowest reaching precision 0.75"
    threshold, info = best_threshold(np.array(scores), np.array(correct), 6, target_precision=1.0)
    assert threshold == 0.9
    _, info = best_threshold(np.array([0.5, 0.4]), np.array([False, True]), 1, target_precision=1.0)
    assert info["rule"] == "best F1 (precision 1.0 not reached)"


def test_thresholds_match_brute_force_on_random_cases() -> None:
    rng = np.random.default_rng(5)
    for _ in range(300):
        n = int(rng.integers(1, 12))
        scores = [float(s) for s in rng.choice([0.1, 0.2, 0.3, 0.5, 0.7, 0.9], n)]  # ties on purpose
        correct = [bool(c) for c in rng.random(n) < 0.6]
        ground_truth = sum(correct) + int(rng.integers(0, 4))
        target = None if rng.random() < 0.5 else float(rng.choice([0.5, 0.8, 1.0]))
        if not any(correct):
            continue
        assert best_threshold(np.array(scores), np.array(correct), ground_truth, target)[0] == _brute_force(
            scores, correct, ground_truth, target
        )


# --- matching and the whole fit ------------------------------------------------------------------------


def test_matching_takes_each_box_once_highest_score_first() -> None:
    truth = [(DefectObject("hole", (0, 0, 10, 10)), DefectObject("stain", (20, 20, 40, 40)))]
    found = [[
        Detection("hole", (0, 0, 10, 11), 0.6),  # right
        Detection("hole", (0, 0, 10, 10), 0.4),  # the same hole again: wrong, the 0.6 one took it
        Detection("hole", (20, 20, 40, 40), 0.9),  # on the stain, wrong class
        Detection("stain", (20, 20, 40, 29), 0.3),  # IoU 0.45 < 0.5
        Detection("medium pale stain", (20, 20, 40, 40), 0.8),  # outside the vocabulary: dropped
    ]]  # fmt: skip
    samples = match_samples(SplitDetections("valid", ["hole", "stain", "knot"], truth, found), iou=0.5)
    assert list(zip(samples.labels, samples.raw, samples.correct)) == [
        ("hole", 0.9, False), ("hole", 0.6, True), ("hole", 0.4, False), ("stain", 0.3, False)
    ]  # fmt: skip
    assert samples.truth == {"hole": 1, "stain": 1, "knot": 0} and samples.dropped == 1
    assert match_samples(SplitDetections("valid", ["hole", "stain", "knot"], truth, found), iou=0.4).correct[-1]


def _samples(rows: dict[str, tuple[np.ndarray, np.ndarray, int]]) -> Samples:
    labels = np.array([label for label, (raw, _c, _t) in rows.items() for _ in raw], dtype=object)
    raw = np.concatenate([r for r, _c, _t in rows.values()])
    correct = np.concatenate([c for _r, c, _t in rows.values()])
    return Samples(labels, raw, correct, {label: t for label, (_r, _c, t) in rows.items()})


def test_fit_gives_curves_and_thresholds_per_class_only_where_the_data_allows() -> None:
    hole_raw, hole_correct = _underconfident(300, seed=6)
    rows = {
        "hole": (hole_raw, hole_correct, int(hole_correct.sum()) + 20),
        "stain": (np.array([0.2, 0.3]), np.array([True, False]), 3),  # 2 detections: the overall curve and default threshold
        "knot": (np.array([0.1, 0.15, 0.2]), np.zeros(3, dtype=bool), 2),
    }
    samples = _samples(rows)
    settings = CalibrationSection(min_per_class=20)
    calibration = fit_calibration(samples, ["hole", "stain", "knot", "wrinkle"], settings, "valid")
    assert set(calibration.per_class) == {"hole"} and set(calibration.thresholds) == {"hole"}
    assert calibration.classes == ("hole", "stain", "knot", "wrinkle")
    scores = calibrated_scores(calibration, samples)
    expected_default = best_threshold(scores, samples.correct, sum(samples.truth.values()))[0]
    assert calibration.default_threshold == expected_default
    assert calibration.threshold("wrinkle") == calibration.threshold("stain") == expected_default
    hole = samples.labels == "hole"
    assert calibration.thresholds["hole"] == best_threshold(scores[hole], samples.correct[hole], rows["hole"][2])[0]
    fitted = calibration.fitted
    assert fitted["detections"] == 305 and fitted["ground_truth"] == sum(samples.truth.values()) and fitted["split"] == "valid"
    assert fitted["ece_after"] < fitted["ece_before"] / 2
    assert fitted["per_class"]["stain"]["curve"] == "overall" and "threshold" not in fitted["per_class"]["knot"]
    assert calibration.apply("stain", 0.2) == calibration.overall(0.2) != calibration.apply("hole", 0.2)
    isotonic = fit_calibration(samples, ["hole", "stain", "knot"], CalibrationSection(method="isotonic"), "valid")
    assert isotonic.overall.method == "isotonic" and isotonic.per_class["hole"].method == "isotonic"


def test_without_a_single_right_detection_the_default_is_one_half() -> None:
    samples = _samples({"hole": (np.array([0.2, 0.3]), np.array([False, False]), 1)})
    calibration = fit_calibration(samples, ["hole"], CalibrationSection(), "valid")
    assert calibration.default_threshold == 0.5 and calibration.thresholds == {}
    assert calibration.apply("hole", 0.3) < 0.5


# --- a real run: the embedded tiny model, one short epoch -------------------------------------------------


@pytest.fixture(scope="module")
def od_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """14 synthetic 256 px images, <OD> only: 4 train, 5 valid, 5 test (enough detections to fit two parameters)."""
    from inspect_core.data.dataset_builder import build_dataset
    from inspect_core.data.importers import import_dataset
    from inspect_core.data.synthetic_fabric import write_voc_dataset

    root = tmp_path_factory.mktemp("calibration_dataset")
    write_voc_dataset(root / "source", count=14, seed=11, size=256)
    section = DatasetSection(splits=SplitRatios(train=0.3, valid=0.35, test=0.35), tasks=["od"])
    build_dataset(import_dataset(root / "source"), root / "built", section, AugmentSection(online=False))
    return root / "built"


def test_training_calibrates_best_and_evaluate_measures_it_on_the_test_split(od_dataset: Path, tmp_path: Path) -> None:
    config = InspectConfig(model=ModelSection(name="tiny", image_size=256), lora=LoraSection(r=8, alpha=16, dropout=0.0),
                           train=TrainSection(epochs=1, batch_size=8, lr=2e-4, max_new_tokens=64, seed=0, precision="fp32"))  # fmt: skip
    classes = json.loads((od_dataset / "dataset.json").read_text())["classes"]
    result = pipeline.train(config, od_dataset, tmp_path / "run")
    best = tmp_path / "run" / "best"
    calibration = load_calibration(best)
    assert calibration is not None and list(calibration.classes) == classes
    assert json.loads((best / "inspect_model.json").read_text())["classes"] == classes
    assert (tmp_path / "run" / "latest" / CALIBRATION_FILE).read_text() == (best / CALIBRATION_FILE).read_text()  # 1 epoch: same weights
    assert result.calibration["fitted_on"] == "valid" and result.calibration["detections"] == calibration.fitted["detections"] > 0
    assert Path(result.calibration["diagram"]).stat().st_size > 1000
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["calibration"]["saved"] == [
        str(best / CALIBRATION_FILE), str(tmp_path / "run" / "latest" / CALIBRATION_FILE)
    ]  # fmt: skip

    report = pipeline.evaluate(config, model=best, dataset=od_dataset, split="test", plots=tmp_path / "plots", calibrate=True)
    measured = report.as_dict()["calibration"]
    assert measured["split"] == "test" and measured["fitted_on"] == "valid" and measured["held_out"]
    assert measured["detections"] > 0 and measured["ece_after"] <= measured["ece_before"]
    assert measured["saved"] == str(best / CALIBRATION_FILE) and Path(measured["diagram"]) == tmp_path / "plots" / "reliability_test.png"
    assert measured["thresholds"] == calibration.thresholds  # the same fit again: deterministic
    assert load_calibration(best) == calibration

    merged = pipeline.merge(config, best, tmp_path / "merged")
    assert load_calibration(merged) == calibration and list(model_vocabulary(merged)) == classes
    again = pipeline.evaluate(config, model=merged, dataset=od_dataset, split="test")  # carries it: measured without refitting
    assert again.calibration["ece_after"] == pytest.approx(measured["ece_after"], abs=0.02) and again.calibration["saved"] is None


def test_calibration_off_or_without_its_split_leaves_no_file(od_dataset: Path, tmp_path: Path) -> None:
    from inspect_core.training.calibration import calibrate_run

    off = InspectConfig(calibration=CalibrationSection(enabled=False))
    assert calibrate_run(off, od_dataset, tmp_path) is None
    missing = InspectConfig(calibration=CalibrationSection(split="train"))
    (tmp_path / "no_train").mkdir()
    (tmp_path / "no_train" / "dataset.json").write_text("{}")
    assert calibrate_run(missing, tmp_path / "no_train", tmp_path / "run") == {"skipped": "the dataset has no train split"}
    assert calibrate_run(InspectConfig(), od_dataset, tmp_path / "run") == {"skipped": "no best checkpoint"}
    assert Curve("platt")(0.3) == pytest.approx(0.3)  # the identity a calibration starts from

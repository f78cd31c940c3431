"""calibration.json beside a model's weights (inspect_core.model.calibration): round trip, vocabulary, checkpoints and merge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoProcessor, Florence2ForConditionalGeneration

from inspect_core.config import LoraSection
from inspect_core.errors import BadInputError
from inspect_core.model.calibration import CALIBRATION_FILE, Calibration, Curve, load_calibration, model_vocabulary
from inspect_core.model.lora import apply_strategy
from inspect_core.model.trained_model import MODEL_INFO, merge_checkpoint, save_checkpoint

CALIBRATION = Calibration(
    classes=("hole", "knot", "stain"),
    overall=Curve("platt", a=1.7, b=2.2),
    per_class={"hole": Curve("isotonic", points=((0.05, 0.1), (0.2, 0.6), (0.4, 0.95)))},
    thresholds={"hole": 0.55},
    default_threshold=0.62,
    fitted={"split": "valid", "ece_before": 0.7, "ece_after": 0.05},
)


def test_round_trip_keeps_every_curve_threshold_and_record(tmp_path: Path) -> None:
    path = CALIBRATION.save(tmp_path)
    assert path == tmp_path / CALIBRATION_FILE and not list(tmp_path.glob("*.partial"))
    loaded = load_calibration(tmp_path)
    assert loaded == CALIBRATION
    for raw in (0.01, 0.1, 0.3, 0.9):
        assert loaded.apply("hole", raw) == CALIBRATION.apply("hole", raw)
        assert loaded.apply("knot", raw) == CALIBRATION.overall(raw)
    assert (loaded.threshold("hole"), loaded.threshold("knot")) == (0.55, 0.62)


def test_curves_apply_the_maps_they_name() -> None:
    platt = Curve("platt", a=2.0, b=1.0)
    assert platt(0.2) == pytest.approx(1 / (1 + (0.8 / 0.2) ** 2 * 2.718281828459045**-1))  # sigmoid(2 logit(.2) + 1)
    iso = CALIBRATION.per_class["hole"]
    assert (iso(0.0), iso(0.125), iso(1.0)) == pytest.approx((0.1, 0.35, 0.95))  # flat outside, linear between points


def test_vocabulary_comes_from_the_calibration_then_the_training_record(tmp_path: Path) -> None:
    assert load_calibration(tmp_path) is None and model_vocabulary(tmp_path) is None
    (tmp_path / MODEL_INFO).write_text(json.dumps({"classes": ["stain", "hole"]}))
    assert model_vocabulary(tmp_path) == ("hole", "stain")
    CALIBRATION.save(tmp_path)
    assert model_vocabulary(tmp_path) == ("hole", "knot", "stain")


def test_checkpoint_records_its_classes_and_merge_carries_the_calibration(random_tiny_dir: Path, tmp_path: Path) -> None:
    processor = AutoProcessor.from_pretrained(random_tiny_dir)
    model = apply_strategy(Florence2ForConditionalGeneration.from_pretrained(random_tiny_dir), LoraSection(r=4, alpha=8))
    save_checkpoint(model, processor, tmp_path / "ckpt", str(random_tiny_dir), "lora", ["hole", "knot"])
    assert json.loads((tmp_path / "ckpt" / MODEL_INFO).read_text())["classes"] == ["hole", "knot"]
    merge_checkpoint(tmp_path / "ckpt", tmp_path / "plain")
    assert not (tmp_path / "plain" / CALIBRATION_FILE).exists()  # nothing to carry
    CALIBRATION.save(tmp_path / "ckpt")
    merge_checkpoint(tmp_path / "ckpt", tmp_path / "merged")
    assert load_calibration(tmp_path / "merged") == CALIBRATION
    assert not (tmp_path / "merged" / MODEL_INFO).exists()  # still a plain Florence-2: the vocabulary travels in calibration.json
    assert model_vocabulary(tmp_path / "merged") == ("hole", "knot", "stain")


@pytest.mark.parametrize(
    "content, problem",
    [
        ("{", "Expecting property name"),
        ("[]", "has no attribute 'get'"),
        ('{"classes": []}', "missing 'overall'"),
        ('{"overall": {"method": "temperature"}}', "unknown curve method 'temperature'"),
        ('{"overall": {"method": "isotonic", "points": [[0.1, 0.5], [0.2, 0.3]]}}', "non-decreasing"),
        ('{"overall": {"method": "isotonic", "points": []}}', "at least one point"),
        ('{"overall": {"method": "platt", "a": NaN}}', "not a finite number"),
        ('{"overall": {"method": "platt"}, "thresholds": {"hole": 1.5}}', "within [0, 1]"),
        ('{"overall": {"method": "platt"}, "thresholds": {"hole": "high"}}', "could not convert string to float"),
    ],
)
def test_an_unreadable_file_is_bad_input_naming_it_and_the_problem(tmp_path: Path, content: str, problem: str) -> None:
    (tmp_path / CALIBRATION_FILE).write_text(content)
    with pytest.raises(BadInputError) as raised:
        load_calibration(tmp_path)
    message = str(raised.value)
    assert message.startswith(f"{tmp_path / CALIBRATION_FILE}: not a calibration file") and problem in message
    assert "calibrate again" in message

"""`inspect_core.inference.predict`: the shipped tiny model on the committed samples, calibration and vocabulary applied."""

from __future__ import annotations

import json
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inspect_core.config import ScoreSection
from inspect_core.errors import BadInputError, UsageError
from inspect_core.inference.predict import Predictor, as_rgb, load_image, load_predictor
from inspect_core.model.calibration import CALIBRATION_FILE, Curve
from inspect_core.model.factory import EMBEDDED_MODEL_DIR
from tests.hostile.build_helpers import png_header_only

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data" / "fabric_voc"
FAST = ScoreSection(max_new_tokens=64)  # the sample frames hold 1-3 defects: 64 tokens is room for 10 boxes


def voc_boxes(xml: Path) -> list[tuple[str, tuple[float, float, float, float]]]:
    """The labelled boxes of a LabelImg file, read with ElementTree (not the project's importer)."""
    root = ET.parse(xml).getroot()
    return [
        (o.findtext("name"), tuple(float(o.find("bndbox").findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")))
        for o in root.iter("object")
    ]  # type: ignore[misc]


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w, h = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union


@pytest.fixture(scope="module")
def tiny() -> Predictor:
    return load_predictor("tiny", precision="fp32", settings=FAST)


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    return load_image(SAMPLES / "fabric_00000.jpg")


def test_od_finds_the_labelled_defects_of_a_sample_frame(tiny: Predictor, frame: np.ndarray) -> None:
    (prediction,) = tiny.predict([frame], threshold=0.05)
    labelled = voc_boxes(SAMPLES / "fabric_00000.xml")
    assert (prediction.width, prediction.height) == (frame.shape[1], frame.shape[0]) and prediction.text is None
    matched = {label for label, box in labelled for d in prediction.detections if d.label == label and iou(d.box, box) >= 0.5}
    assert matched, (prediction.detections, labelled)
    assert all(d.score >= 0.05 and d.score == d.raw_score for d in prediction.detections)  # the embedded model has no calibration
    assert [d.score for d in prediction.detections] == sorted((d.score for d in prediction.detections), reverse=True)
    assert prediction.seconds > 0


def test_no_threshold_means_the_operating_thresholds(tiny: Predictor, frame: np.ndarray) -> None:
    assert not tiny.thresholds.calibrated and tiny.thresholds.default == 0.3  # uncalibrated: UNCALIBRATED_THRESHOLD
    low = tiny.predict([frame], threshold=0.0)[0].detections
    default = tiny.predict([frame])[0].detections
    assert default == [d for d in low if d.score >= 0.3]
    assert tiny.predict([frame], threshold=1.0)[0].detections == []


def test_pil_and_array_inputs_give_the_same_answer(tiny: Predictor, frame: np.ndarray) -> None:
    with_alpha = Image.fromarray(frame).convert("RGBA")
    from_pil, from_array = tiny.predict([with_alpha, frame], threshold=0.05)
    assert from_pil.detections == from_array.detections and from_pil.detections


def test_dense_returns_the_caption_text_without_loc_tokens(tiny: Predictor, frame: np.ndarray) -> None:
    (prediction,) = tiny.predict([frame], task="dense", threshold=0.0)
    assert prediction.text and "<loc_" not in prediction.text and "</s>" not in prediction.text
    assert prediction.detections and all(d.label in prediction.text for d in prediction.detections)  # phrases, not classes
    (grounded,) = tiny.predict([frame], task="grounding", phrase="small dark hole", threshold=0.0)
    assert grounded.text and "<loc_" not in grounded.text


def test_grounding_needs_a_phrase_and_tasks_are_checked(tiny: Predictor, frame: np.ndarray) -> None:
    with pytest.raises(UsageError, match="phrase"):
        tiny.predict([frame], task="grounding")
    with pytest.raises(UsageError, match="task 'caption'"):
        tiny.predict([frame], task="caption")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="threshold 1.5"):
        tiny.predict([frame], threshold=1.5)


def test_tiles_map_boxes_back_into_the_whole_image(tiny: Predictor, frame: np.ndarray) -> None:
    strip = np.concatenate([frame, frame[:, ::-1]], axis=1)  # 768x384: two square tiles at the default tile size
    (prediction,) = tiny.predict([strip], threshold=0.05, tile=True)
    assert prediction.width == 2 * frame.shape[1] and prediction.detections
    assert all(
        0 <= d.box[0] < d.box[2] <= prediction.width and 0 <= d.box[1] < d.box[3] <= prediction.height for d in prediction.detections
    )
    assert any(d.box[0] >= frame.shape[1] for d in prediction.detections)  # the mirrored half's defects are found in its tile


def test_calibration_and_vocabulary_of_the_model_folder_apply(tmp_path: Path, tiny: Predictor, frame: np.ndarray) -> None:
    model = tmp_path / "calibrated"
    model.mkdir()
    for f in EMBEDDED_MODEL_DIR.iterdir():
        (model / f.name).symlink_to(f)
    curve = {"method": "platt", "a": 1.0, "b": 2.0}  # raises every confidence: sigmoid(logit(raw) + 2)
    calibration = {"classes": ["hole"], "overall": curve, "thresholds": {"hole": 0.2}, "default_threshold": 0.9}
    (model / CALIBRATION_FILE).write_text(json.dumps(calibration))
    predictor = load_predictor(str(model), precision="fp32", settings=FAST)
    assert predictor.thresholds.calibrated and predictor.thresholds.threshold("hole") == 0.2
    raw = tiny.predict([frame], threshold=0.0)[0].detections
    (calibrated,) = predictor.predict([frame])
    expected = [d for d in raw if d.label == "hole" and Curve.from_dict(curve)(d.raw_score) >= 0.2]
    assert expected and len(calibrated.detections) == len(expected)
    for got, want in zip(calibrated.detections, expected):
        assert got.raw_score == pytest.approx(want.raw_score) and got.score == pytest.approx(Curve.from_dict(curve)(want.raw_score))
        assert got.score > got.raw_score
    assert {d.label for d in raw} - {"hole"}, "the sample frame must hold another class for the vocabulary check to mean anything"
    assert {d.label for d in calibrated.detections} == {"hole"}  # the other classes are outside this model's vocabulary
    dense = predictor.predict([frame], task="dense", threshold=0.0)[0]
    assert any(d.label not in ("hole",) for d in dense.detections)  # phrases are not held to the class vocabulary


def test_concurrent_calls_give_the_answers_of_sequential_ones(tiny: Predictor) -> None:
    frames = [load_image(SAMPLES / f"fabric_0000{i}.jpg") for i in range(4)]
    sequential = [tiny.predict([f], threshold=0.05)[0].detections for f in frames]
    results: dict[int, list] = {}

    def run(i: int) -> None:
        results[i] = tiny.predict([frames[i]], threshold=0.05)[0].detections

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[i] for i in range(4)] == sequential


def test_draw_marks_the_boxes_on_a_copy(tiny: Predictor, frame: np.ndarray) -> None:
    (prediction,) = tiny.predict([frame], threshold=0.05)
    drawn = prediction.draw(frame)
    assert drawn.shape == frame.shape and drawn is not frame
    x1, y1, x2, y2 = (int(round(v)) for v in prediction.detections[0].box)
    assert np.abs(drawn[y1 : y2 + 1, x1].astype(int) - frame[y1 : y2 + 1, x1]).sum() > 0  # the box's left edge was drawn
    assert np.array_equal(load_image(SAMPLES / "fabric_00000.jpg"), frame)  # the input is untouched


def test_unusable_images_are_refused_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(BadInputError, match=r"notes.png.*not an image"):
        load_image(tmp_path / "notes.png")
    (tmp_path / "bomb.png").write_bytes(png_header_only(20000, 20000))
    with pytest.raises(BadInputError, match=r"bomb.png.*decode budget"):
        load_image(tmp_path / "bomb.png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(BadInputError, match=r"upload.jpg: image empty.jpg is an empty file"):
        load_image(tmp_path / "empty.jpg", name="upload.jpg")
    with pytest.raises(BadInputError, match="8-bit"):
        as_rgb(np.zeros((8, 8, 3), dtype=np.float32))
    with pytest.raises(BadInputError, match="shape"):
        as_rgb(np.zeros((8, 8, 2), dtype=np.uint8))
    assert as_rgb(np.zeros((8, 6), dtype=np.uint8)).shape == (8, 6, 3)

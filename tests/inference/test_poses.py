"""Test-time poses (score.tta_poses): boxes found in flipped and turned crops land where the defect is, and fuse.

Oracles: a box drawn into an image is found again, by pixel search, in every pose, and mapped back
exactly; a detector that only sees the left half of a crop misses a defect on the right without
poses and finds it, at the drawn place, with them, through the CLI's ``score`` and the store, and ``evaluate`` measures it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from inspect_core.cli import app
from inspect_core.config import ScoreSection
from inspect_core.data.annotations import box_iou
from inspect_core.inference import scoring
from inspect_core.inference.detector import Detection
from inspect_core.inference.poses import POSES, PosedDetector, detect_in_poses, fuse, posed, unposed_box, with_poses


def test_every_pose_maps_a_drawn_box_back_exactly() -> None:
    rng = np.random.default_rng(0)
    assert len(set(POSES)) == 8
    for _ in range(100):
        height, width = rng.integers(5, 40, 2)
        image = np.zeros((height, width, 1), np.uint8)
        x0, x1 = sorted(rng.choice(width + 1, 2, replace=False))
        y0, y1 = sorted(rng.choice(height + 1, 2, replace=False))
        image[y0:y1, x0:x1] = 1
        seen = set()
        for pose in POSES:
            ys, xs = np.nonzero(posed(image, pose)[..., 0])
            found = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            assert unposed_box(found, pose, width, height) == (x0, y0, x1, y1), pose
            seen.add(posed(image, pose).tobytes())
        if height != width and x1 - x0 != y1 - y0 and (x0, y0) != (0, 0):
            assert len(seen) > 1  # the poses really move the pixels


def test_fusion_keeps_agreement_and_discounts_a_box_one_pose_saw() -> None:
    hole = [Detection("hole", (10, 10, 30, 30), 0.8)]
    near = [Detection("hole", (12, 10, 32, 30), 0.4)]
    lone = [Detection("stain", (50, 50, 60, 60), 0.6)]
    fused = fuse([hole, near + lone])
    assert [d.label for d in fused] == ["hole", "stain"]
    assert fused[0].score == pytest.approx(0.6)  # mean of 0.8 and 0.4, found in both poses
    assert fused[0].box == pytest.approx((10 + 2 / 3, 10, 30 + 2 / 3, 30))  # confidence-weighted mean
    assert fused[1].score == pytest.approx(0.3) and fused[1].box == (50, 50, 60, 60)  # one pose of two
    other_class = fuse([hole, [Detection("knot", (10, 10, 30, 30), 0.8)]])
    assert sorted(d.label for d in other_class) == ["hole", "knot"]  # classes never merge
    assert fuse([hole]) == hole


class LeftEyeDetector:
    """Finds white blobs (the drawn defect) only in the left half of a crop: a model that misses some poses."""

    input_size = 128

    def __init__(self) -> None:
        self.crops = 0

    def __call__(self, crops: Sequence[np.ndarray], max_new_tokens: int, num_beams: int) -> list[list[Detection]]:
        self.crops += len(crops)
        found = []
        for crop in crops:
            mask = (crop.min(axis=2) > 200).astype(np.uint8)
            count, _labels, stats, _ = cv2.connectedComponentsWithStats(mask)
            left = [(x, y, w, h) for x, y, w, h, area in stats[1:count] if area > 4 and x + w / 2 < crop.shape[1] / 2]
            found.append([Detection("hole", (x, y, x + w, y + h), 0.8) for x, y, w, h in left])
        return found


def blob_frame(path: Path, box: tuple[int, int, int, int], side: int = 256) -> None:
    image = np.full((side, side, 3), 90, np.uint8)
    x0, y0, x1, y1 = box
    image[y0:y1, x0:x1] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)


def test_poses_find_what_one_pose_misses_and_place_it_right() -> None:
    crop = np.full((128, 128, 3), 90, np.uint8)
    crop[20:40, 90:120] = 255  # right half: the plain pose misses it
    detector = LeftEyeDetector()
    assert detector([crop], 8, 1) == [[]]
    for count in (2, 4, 8):
        (found,) = PosedDetector(detector, count)([crop], 8, 1)
        assert len(found) == 1 and found[0].box == (90, 20, 120, 40)
        seen_in = sum(1 for pose in POSES[:count] if detector([posed(crop, pose)], 8, 1)[0])
        assert found[0].score == pytest.approx(0.8 * seen_in / count)  # mean confidence times the share of poses
    batches: list[int] = []
    detect_in_poses(lambda images: batches.append(len(images)) or [[] for _ in images], [crop] * 3, 8)
    assert batches == [3] * 8  # the caller's batch size, not 24 crops at once
    assert with_poses(detector, 1) is detector
    with pytest.raises(ValueError, match="score.tta_poses must be one of 1, 2, 4, 8"):
        detect_in_poses(lambda images: [[] for _ in images], [crop], 3)
    with pytest.raises(ValidationError):
        ScoreSection(tta_poses=3)


def test_predict_asks_in_the_recipes_poses(random_tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``predict`` and the app's Try page (one Predictor) read ``score.tta_poses`` as scoring does: the right-half defect appears."""
    from inspect_core.inference import predict
    from inspect_core.inference.detector import Answer

    eye = LeftEyeDetector()
    monkeypatch.setattr(predict, "generate_answers", lambda _m, _p, images, *_a, **_k: [Answer(d, "") for d in eye(images, 8, 1)])
    frame = np.full((128, 128, 3), 90, np.uint8)
    frame[20:40, 90:120] = 255
    settings = {"default_threshold": 0.1, "num_workers": 0}
    (plain,) = predict.load_predictor(str(random_tiny_dir), "fp32", 128, ScoreSection(**settings)).predict([frame])
    (posed_,) = predict.load_predictor(str(random_tiny_dir), "fp32", 128, ScoreSection(**settings, tta_poses=4)).predict([frame])
    assert plain.detections == []
    (box,) = posed_.detections
    assert box_iou(box.box, (90, 20, 120, 40)) > 0.9 and box.raw_score == pytest.approx(0.8 * 2 / 4)  # 2 of the 4 poses see it


def test_score_command_with_poses_stores_the_defect_a_single_pose_misses(
    tmp_path: Path, random_tiny_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # fmt: skip
    """Through the CLI: ``--set score.tta_poses=2`` reaches the scoring stage; the store holds the drawn box."""
    blob_frame(tmp_path / "frames" / "right.png", (180, 40, 240, 80))  # right half of the frame
    blob_frame(tmp_path / "frames" / "left.png", (20, 150, 60, 200))
    detector = LeftEyeDetector()
    monkeypatch.setattr(scoring, "load_detector", lambda *_args, **_kwargs: detector)
    recipe = tmp_path / "score.yaml"
    recipe.write_text("score:\n  num_workers: 0\n  default_threshold: 0.3\n")

    def run(poses: int) -> dict[str, list[tuple[float, ...]]]:
        db = tmp_path / f"poses{poses}.db"
        args = ["score", "--images", str(tmp_path / "frames" / "*.png"), "--model", str(random_tiny_dir), "--config", str(recipe)]
        result = CliRunner().invoke(app, [*args, "--db", f"sqlite:///{db}", "--json", "--set", f"score.tta_poses={poses}"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["scored"] == 2
        with sqlite3.connect(db) as connection:  # the store read on its own, not through inspect_core
            rows = connection.execute(
                "SELECT i.path, d.x1, d.y1, d.x2, d.y2, d.confidence FROM detections d JOIN images i ON i.id = d.image_id"
            ).fetchall()
        stored: dict[str, list[tuple[float, ...]]] = {}
        for path, *box in rows:
            stored.setdefault(Path(path).name, []).append(tuple(box))
        return stored

    plain = run(1)
    assert "right.png" not in plain and len(plain["left.png"]) == 1
    with_two = run(2)
    assert len(with_two["right.png"]) == 1 and len(with_two["left.png"]) == 1
    for name, truth in (("right.png", (180, 40, 240, 80)), ("left.png", (20, 150, 60, 200))):
        (box,) = with_two[name]
        assert box_iou(box[:4], truth) > 0.9, (name, box)
        assert box[4] == pytest.approx(0.4, abs=0.01)  # one pose of two saw each


def test_evaluate_command_measures_in_the_recipes_poses(tmp_path: Path, random_tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the CLI: ``evaluate --set score.tta_poses=2`` measures what ``score`` would store with that recipe.

    Every image holds one defect in each half; the left-eyed model finds half of them in one pose
    (AP50 0.5: all it says is right, half is missing) and all of them in two (AP50 1.0).
    """
    from inspect_core.config import AugmentSection, DatasetSection, SplitRatios
    from inspect_core.data.dataset_builder import build_dataset
    from inspect_core.data.importers import import_dataset
    from inspect_core.training import evaluation

    source = tmp_path / "yolo"
    for index in range(10):
        left, right = (16 + index, 30, 56 + index, 70), (170, 120 + index, 230, 160 + index)
        blob_frame(source / "images" / f"frame{index}.png", left)
        image = cv2.imread(str(source / "images" / f"frame{index}.png"))
        image[right[1] : right[3], right[0] : right[2]] = 255
        cv2.imwrite(str(source / "images" / f"frame{index}.png"), image)
        lines = [f"0 {(b[0] + b[2]) / 512} {(b[1] + b[3]) / 512} {(b[2] - b[0]) / 256} {(b[3] - b[1]) / 256}" for b in (left, right)]
        (source / "labels").mkdir(exist_ok=True)
        (source / "labels" / f"frame{index}.txt").write_text("\n".join(lines) + "\n")
    (source / "data.yaml").write_text("nc: 1\nnames: [hole]\n")
    built = tmp_path / "built"
    build_dataset(import_dataset(source), built, DatasetSection(splits=SplitRatios(train=0.6, valid=0.2, test=0.2)), AugmentSection())
    eye = LeftEyeDetector()
    monkeypatch.setattr(evaluation, "detect", lambda _model, _processor, images, _task, **_kwargs: eye(images, 8, 1))

    def ap50(poses: int) -> float:
        args = ["evaluate", "--model", str(random_tiny_dir), "--dataset", str(built), "--split", "test", "--json"]
        result = CliRunner().invoke(app, [*args, "--set", f"score.tta_poses={poses}"])
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["images"] == 2
        return report["detection"]["per_class"]["hole"]["ap50"]

    assert ap50(1) == pytest.approx(0.5, abs=0.02)
    assert ap50(2) == pytest.approx(1.0)

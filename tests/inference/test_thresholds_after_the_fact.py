"""Thresholds after the fact: a storage floor, operating flags, rescoring with history, calibrated confidences.

The model is a scripted detector (fixed answers per crop), so every expected row is known exactly: the
oracles below are plain Python over those answers, not the store's own queries.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from inspect_core.config import ScoreSection
from inspect_core.inference.detector import Detection
from inspect_core.inference.scoring import score_images
from inspect_core.inference.thresholds import operating_thresholds
from inspect_core.model.calibration import Calibration, Curve, load_calibration
from inspect_core.store import (
    DetectionDayCount,
    DetectionRecord,
    ImageScore,
    ReportFilter,
    ScoringRun,
    SupersededDetection,
    class_summary,
    defect_rate_per_line,
    detections_frame,
    ensure_source,
    open_store,
)
from tests.conftest import write_image

# (label, raw score) answered for every crop; boxes differ per answer
ANSWERS = [("hole", 0.9), ("stain", 0.35), ("knot", 0.05), ("knot", 0.004), ("medium pale stain in the lower half", 0.8)]


class Scripted:
    """A backend that answers ANSWERS for each crop; the crop's brightness shifts the scores a little, so images differ."""

    input_size = 64

    def __call__(self, crops: Sequence[np.ndarray], max_new_tokens: int, num_beams: int) -> list[list[Detection]]:
        found = []
        for crop in crops:
            shift = float(crop.mean()) / 255 * 0.01
            found.append(
                [Detection(label, (4.0 * k, 4.0, 4.0 * k + 10, 20.0), min(1.0, score + shift)) for k, (label, score) in enumerate(ANSWERS)]
            )
        return found


def model_folder(root: Path, calibration: Calibration | None = None) -> Path:
    folder = root / "model"
    folder.mkdir(exist_ok=True)
    (folder / "inspect_model.json").write_text(json.dumps({"base_model": "tiny", "kind": "full", "classes": ["hole", "knot", "stain"]}))
    if calibration is not None:
        calibration.save(folder)
    return folder


def frames(root: Path, count: int = 4) -> list[Path]:
    return [write_image(root / "frames" / f"f{i}.png", 64, 64, seed=i) for i in range(count)]


def score(paths: list[Path], model: Path, engine: sa.Engine, source: int, rescore: bool = False, **settings: object):
    return score_images(paths, str(model), engine, ScoreSection(num_workers=0, **settings), source, detector=Scripted(), rescore=rescore)


def rows(engine: sa.Engine, flt: ReportFilter) -> pd.DataFrame:
    frame = detections_frame(engine, flt)[["image_path", "class_name", "confidence", "x1", "y1", "x2", "y2"]]
    return frame.sort_values(["image_path", "x1"]).reset_index(drop=True)


def test_every_detection_down_to_the_floor_is_stored_and_only_operating_ones_count(store_url: str, tmp_path: Path) -> None:
    engine = open_store(store_url)
    source = ensure_source(engine, "cam-1", "L1")
    summary = score(frames(tmp_path), model_folder(tmp_path), engine, source)
    # uncalibrated: operating threshold 0.3 for every class; floor 0.01; the caption phrase is outside the vocabulary
    assert (summary.detections, summary.stored) == (4 * 2, 4 * 3)
    assert summary.per_class == {"hole": 4, "stain": 4}
    assert summary.dropped_labels == {"medium pale stain in the lower half": 4}
    with Session(engine) as session:
        run = session.get(ScoringRun, summary.run_id)
        assert run.thresholds["default"] == 0.3 and run.thresholds["store_floor"] == 0.01
        assert run.thresholds["dropped_labels"] == {"medium pale stain in the lower half": 4}
        assert (run.detections, run.defects) == (12, 8)
        stored = session.exec(select(DetectionRecord)).all()
    assert Counter((d.class_name, d.operating) for d in stored) == {("hole", True): 4, ("stain", True): 4, ("knot", False): 4}
    assert set(class_summary(engine, ReportFilter())["class_name"]) == {"hole", "stain"}
    after = class_summary(engine, ReportFilter(min_confidence=0.04))
    assert dict(zip(after["class_name"], after["detections"])) == {"hole": 4, "stain": 4, "knot": 4}
    assert defect_rate_per_line(engine, ReportFilter()).to_dict("records")[0]["images_with_defects"] == 4
    assert defect_rate_per_line(engine, ReportFilter(min_confidence=0.95)).to_dict("records")[0]["images_with_defects"] == 0


@pytest.mark.parametrize("threshold", [0.04, 0.3, 0.5, 0.95])
def test_a_threshold_after_the_fact_gives_what_scoring_at_that_threshold_gives(tmp_path: Path, threshold: float) -> None:
    paths, model = frames(tmp_path), model_folder(tmp_path)
    floor = open_store(f"sqlite:///{tmp_path / 'floor.db'}")
    direct = open_store(f"sqlite:///{tmp_path / 'direct.db'}")
    score(paths, model, floor, ensure_source(floor, "cam-1", "L1"))
    score(paths, model, direct, ensure_source(direct, "cam-1", "L1"), default_threshold=threshold)
    pd.testing.assert_frame_equal(rows(floor, ReportFilter(min_confidence=threshold)), rows(direct, ReportFilter()))
    assert_same = defect_rate_per_line(floor, ReportFilter(min_confidence=threshold)).equals(defect_rate_per_line(direct, ReportFilter()))
    assert assert_same
    pd.testing.assert_frame_equal(class_summary(floor, ReportFilter(min_confidence=threshold)), class_summary(direct, ReportFilter()))


def day_counts_from_detections(engine: sa.Engine) -> dict[tuple, tuple[int, float, float]]:
    """The day counts recomputed in Python from the detections table (the oracle)."""
    totals: dict[tuple, list] = {}
    with Session(engine) as session:
        for d in session.exec(select(DetectionRecord)):
            key = (d.captured_at.date(), d.source_id or 0, d.model_version_id, d.class_name, min(int(d.confidence * 20), 19), d.operating)
            total = totals.setdefault(key, [0, 0.0, 0.0])
            total[0], total[1], total[2] = total[0] + 1, total[1] + d.confidence, max(total[2], d.confidence)
    return {k: (n, round(s, 9), round(m, 9)) for k, (n, s, m) in totals.items()}


def stored_day_counts(engine: sa.Engine) -> dict[tuple, tuple[int, float, float]]:
    with Session(engine) as session:
        return {
            (c.day, c.source_key, c.model_version_id, c.class_name, c.confidence_bin, c.operating): (
                c.n, round(c.confidence_sum, 9), round(c.confidence_max, 9))
            for c in session.exec(select(DetectionDayCount))
        }  # fmt: skip


def test_rescoring_is_a_new_run_that_keeps_the_earlier_answers(store_url: str, tmp_path: Path) -> None:
    engine = open_store(store_url)
    source = ensure_source(engine, "cam-1", "L1")
    paths, model = frames(tmp_path), model_folder(tmp_path)
    first = score(paths, model, engine, source)
    again = score(paths, model, engine, source)
    assert (again.scored, again.skipped) == (0, 4)  # without --rescore: exactly once
    second = score(paths, model, engine, source, rescore=True, default_threshold=0.5)
    assert (second.scored, second.skipped, second.rescored) == (4, 0, True)
    assert second.run_id != first.run_id and second.model_version == first.model_version
    with Session(engine) as session:
        scores = session.exec(select(ImageScore)).all()
        assert len(scores) == 4 and {s.run_id for s in scores} == {second.run_id}
        assert {s.defects for s in scores} == {1}  # only the hole reaches 0.5
        current = session.exec(select(DetectionRecord)).all()
        assert {d.run_id for d in current} == {second.run_id} and len(current) == 12
        history = session.exec(select(SupersededDetection)).all()
        assert len(history) == 12 and {(h.run_id, h.superseded_by_run) for h in history} == {(first.run_id, second.run_id)}
        assert Counter(h.operating for h in history) == {True: 8, False: 4}
        old = session.get(ScoringRun, first.run_id)
        assert (old.images_scored, old.defects) == (4, 8)  # the earlier run's record stays as it was
    assert stored_day_counts(engine) == day_counts_from_detections(engine)
    per_line = defect_rate_per_line(engine, ReportFilter()).to_dict("records")[0]
    assert (per_line["images_scored"], per_line["images_with_defects"]) == (4, 4)
    assert dict(zip(*class_summary(engine, ReportFilter()).iloc[:, :2].T.values)) == {"hole": 4}


def test_calibrated_confidences_and_thresholds_are_applied_and_recorded(store_url: str, tmp_path: Path) -> None:
    raise_low = Curve("platt", a=1.0, b=2.0)  # lifts every raw score
    calibration = Calibration(("hole", "knot", "stain"), raise_low, thresholds={"stain": 0.9}, default_threshold=0.6)
    model = model_folder(tmp_path, calibration)
    assert load_calibration(model) == calibration
    engine = open_store(store_url)
    paths = frames(tmp_path, 2)
    summary = score(paths, model, engine, ensure_source(engine, "cam-1", "L1"))
    assert summary.thresholds == operating_thresholds(ScoreSection(), calibration).as_dict() and summary.thresholds["calibrated"]
    expected = set()  # (image, class, calibrated confidence, operating) from the scripted answers and the curve
    for path in paths:
        shift = float(cv2.imread(str(path)).mean()) / 255 * 0.01
        for label, raw in ANSWERS[:4]:
            confidence = 1 / (1 + np.exp(-(np.log((raw + shift) / (1 - raw - shift)) + 2.0)))
            if confidence >= 0.01:
                expected.add((path.name, label, round(float(confidence), 5), bool(confidence >= calibration.threshold(label))))
    frame = detections_frame(engine, ReportFilter(min_confidence=0.0))
    with Session(engine) as session:
        operating = {d.id: d.operating for d in session.exec(select(DetectionRecord))}
    assert len(operating) == len(expected) == len(frame)
    stored = {(Path(r.image_path).name, r.class_name, round(r.confidence, 5)) for r in frame.itertuples()}
    assert stored == {e[:3] for e in expected}
    assert Counter(operating.values()) == Counter(e[3] for e in expected)
    assert "stain" in {e[1] for e in expected if not e[3]}  # 0.35 raw -> about 0.8 calibrated, under stain's 0.9

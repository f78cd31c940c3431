"""Operating thresholds: which stored detections count as defects, per class.

Scoring stores every detection down to a low floor (``score.store_floor``) and marks those at or above
the operating threshold of their class; reports, the HTML page and the app show the marked ones unless
asked for another threshold after the fact (``report --min-confidence``). The thresholds a run used
are recorded on the run, so a figure can always be traced to the thresholds behind it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from inspect_core.config import ScoreSection
from inspect_core.inference.detector import Detection
from inspect_core.model.calibration import UNCALIBRATED_THRESHOLD, Calibration, load_calibration, model_vocabulary


@dataclass(frozen=True)
class OperatingThresholds:
    default: float
    classes: dict[str, float] = field(default_factory=dict)
    store_floor: float = 0.0
    calibrated: bool = False

    def threshold(self, label: str) -> float:
        return self.classes.get(label, self.default)

    @property
    def floor(self) -> float:
        """The lowest confidence stored: the floor, or a lower operating threshold (its detections must be stored to count)."""
        return min(self.store_floor, self.default, *self.classes.values())

    def as_dict(self) -> dict[str, Any]:
        return {"default": self.default, "classes": dict(sorted(self.classes.items())), "store_floor": self.store_floor,
                "calibrated": self.calibrated}  # fmt: skip


def operating_thresholds(settings: ScoreSection, calibration: Calibration | None) -> OperatingThresholds:
    """The thresholds a run applies. Precedence: the recipe's ``class_thresholds``, then its ``default_threshold``
    (one threshold for every class, e.g. ``score --threshold``), then the model's calibrated per-class
    thresholds, then its calibrated default, then ``UNCALIBRATED_THRESHOLD``."""
    if settings.default_threshold is not None:
        default, classes = settings.default_threshold, {}
    elif calibration is not None:
        default, classes = calibration.default_threshold, dict(calibration.thresholds)
    else:
        default, classes = UNCALIBRATED_THRESHOLD, {}
    classes |= settings.class_thresholds
    return OperatingThresholds(default, classes, settings.store_floor, calibration is not None)


@dataclass(frozen=True)
class DetectionPolicy:
    """What a model's raw detections become: calibrated, kept to the model's vocabulary, judged against the thresholds.

    One policy for every path that runs a model on frames (scoring, ``predict``, the app's Try page), so a
    box shows the same confidence and verdict wherever a person sees it.
    """

    thresholds: OperatingThresholds
    calibration: Calibration | None = None
    vocabulary: frozenset[str] | None = None  # None: any label (a hub model answers in open vocabulary)

    def judge(self, detections: Sequence[Detection]) -> tuple[list[tuple[Detection, bool]], Counter[str]]:
        """(detection with calibrated score, operating) for those at or above the storage floor, and the labels
        dropped as outside the vocabulary (a caption phrase answered to ``<OD>`` is not a defect class)."""
        kept: list[tuple[Detection, bool]] = []
        dropped: Counter[str] = Counter()
        for detection in detections:
            if self.vocabulary is not None and detection.label not in self.vocabulary:
                dropped[detection.label] += 1
                continue
            if self.calibration is not None:
                detection = replace(detection, score=self.calibration.apply(detection.label, detection.score))
            if detection.score >= self.thresholds.floor:
                kept.append((detection, detection.score >= self.thresholds.threshold(detection.label)))
        return kept, dropped


def detection_policy(model_dir: str | Path, settings: ScoreSection) -> DetectionPolicy:
    """The policy of the model in ``model_dir`` (its calibration.json and vocabulary) under the recipe's ``score:`` settings."""
    calibration = load_calibration(model_dir)
    vocabulary = model_vocabulary(model_dir)
    return DetectionPolicy(operating_thresholds(settings, calibration), calibration, None if vocabulary is None else frozenset(vocabulary))

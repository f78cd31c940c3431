"""A model's confidence calibration and operating thresholds: ``calibration.json`` beside its weights.

The raw confidence of a detection (the geometric mean of its token probabilities,
``inspect_core.inference.detector``) ranks detections well but is not a probability: correct boxes of
the tiny model sit at 0.1-0.3. Training fits a map from raw score to the probability that the
detection is correct (``inspect_core.training.calibration``), per class where the valid split has
enough detections, and picks an operating threshold per class on the calibrated scale. Scoring,
``predict`` and the app apply both, so a confidence of 0.8 means about 8 in 10 such boxes are right.

A curve is either Platt scaling (``sigmoid(a * logit(raw) + b)``) or isotonic (a non-decreasing
piecewise-linear map through ``points``). The file also records the model's class vocabulary: labels
outside it are never stored as defect classes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from inspect_core.errors import BadInputError

CALIBRATION_FILE = "calibration.json"
UNCALIBRATED_THRESHOLD = 0.3  # operating threshold of a model without calibration.json (the former score default)


@dataclass(frozen=True)
class Curve:
    """One raw -> calibrated map: ``platt`` with (a, b), or ``isotonic`` with (raw, calibrated) points."""

    method: str
    a: float = 1.0
    b: float = 0.0
    points: tuple[tuple[float, float], ...] = ()

    def __call__(self, raw: float) -> float:
        if self.method == "isotonic":
            xs, ys = zip(*self.points)
            return float(np.interp(raw, xs, ys))
        p = min(max(raw, 1e-6), 1 - 1e-6)
        z = self.a * math.log(p / (1 - p)) + self.b
        return 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Curve:
        points = tuple((float(x), float(y)) for x, y in data.get("points", ()))
        curve = cls(str(data["method"]), float(data.get("a", 1.0)), float(data.get("b", 0.0)), points)
        if curve.method not in ("platt", "isotonic"):
            raise ValueError(f"unknown curve method {curve.method!r} (platt or isotonic)")
        values = [curve.a, curve.b, *(v for point in points for v in point)]
        if not all(math.isfinite(v) for v in values):
            raise ValueError("a curve parameter is not a finite number")
        if curve.method == "isotonic" and (not points or any(x2 < x1 or y2 < y1 for (x1, y1), (x2, y2) in pairwise(points))):
            raise ValueError("an isotonic curve needs at least one point, non-decreasing in both raw and calibrated score")
        return curve


@dataclass(frozen=True)
class Calibration:
    classes: tuple[str, ...]  # the model's class vocabulary
    overall: Curve
    per_class: dict[str, Curve] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)  # operating threshold per class, calibrated scale
    default_threshold: float = 0.5  # for a class without its own
    fitted: dict[str, Any] = field(default_factory=dict)  # split, detections, ECE before/after, how thresholds were chosen

    def apply(self, label: str, raw: float) -> float:
        return self.per_class.get(label, self.overall)(raw)

    def threshold(self, label: str) -> float:
        return self.thresholds.get(label, self.default_threshold)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["classes"] = list(self.classes)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        calibration = cls(
            classes=tuple(str(c) for c in data.get("classes", ())), overall=Curve.from_dict(data["overall"]),
            per_class={str(k): Curve.from_dict(v) for k, v in data.get("per_class", {}).items()},
            thresholds={str(k): float(v) for k, v in data.get("thresholds", {}).items()},
            default_threshold=float(data.get("default_threshold", 0.5)), fitted=dict(data.get("fitted", {})),
        )  # fmt: skip
        bad = {k: v for k, v in (calibration.thresholds | {"default_threshold": calibration.default_threshold}).items() if not 0 <= v <= 1}
        if bad:
            raise ValueError(f"thresholds must be within [0, 1]: {bad}")
        return calibration

    def save(self, folder: Path | str) -> Path:
        """Write ``calibration.json`` atomically (a reader never sees half a file)."""
        target = Path(folder) / CALIBRATION_FILE
        partial = target.with_name(target.name + ".partial")
        partial.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        partial.replace(target)
        return target


def load_calibration(model_dir: Path | str) -> Calibration | None:
    """The calibration saved with a model folder; None for a model without one (a hub id, the embedded base)."""
    path = Path(model_dir) / CALIBRATION_FILE
    if not path.is_file():
        return None
    try:
        return Calibration.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError, AttributeError) as error:  # bad JSON, a missing key, a list where a mapping belongs
        detail = f"missing {error}" if isinstance(error, KeyError) else str(error)
        raise BadInputError(
            f"{path}: not a calibration file inspect-core can read ({detail}); delete it or calibrate again "
            "(inspect-core evaluate --calibrate)"
        ) from None


def model_vocabulary(model_dir: Path | str) -> tuple[str, ...] | None:
    """The classes a model was trained to name; None when unknown (a hub model answers in open vocabulary).

    From ``calibration.json``, else the training record (``inspect_model.json`` ``classes``), an ONNX
    export's manifest, or the embedded base's pretraining record (``pretrain_metrics.json``).
    """
    folder = Path(model_dir)
    calibration = load_calibration(folder)
    if calibration is not None and calibration.classes:
        return calibration.classes
    sources = (
        ("inspect_model.json", ("classes",)),
        ("onnx_model.json", ("source", "classes")),
        ("pretrain_metrics.json", ("best", "per_class")),
    )
    for name, keys in sources:
        path = folder / name
        if path.is_file():
            value: Any = json.loads(path.read_text())
            for key in keys:
                value = value.get(key) if isinstance(value, dict) else None
            if value:
                return tuple(sorted(value))
    return None

"""Fit a model's confidence calibration and per-class operating thresholds on a labelled split.

A detection's raw confidence (the geometric mean of its token probabilities) ranks boxes well but is no
probability: correct boxes of the fine-tuned tiny model sit at 0.1-0.3. Here the model runs on a split
(``calibration.split``, valid by default), each detection is matched to the ground truth (same class,
IoU >= ``calibration.iou``, each labelled box matched once, highest score first) and a map from raw
score to "probability this box is right" is fitted: Platt scaling (a logistic regression on
``logit(raw)``, two parameters: what a few dozen detections of a small valid split can support) or
isotonic regression (pool-adjacent-violators, any monotone shape, needs more data). Overall, and per
class where the class has ``min_per_class`` detections with both right and wrong ones. Measured on the
demo (fitted on the 13 detections of its 6 valid images, ECE on the 25 of its 12 test images): raw 0.58,
Platt 0.19 with every right box above 0.5, isotonic 0.27 with 84% of them above 0.5; so Platt is the default.

Operating thresholds are chosen on the calibrated scale: the best F1 on the split, counting labelled
boxes the model missed as false negatives (or the lowest threshold reaching
``calibration.target_precision``); pooled over all classes for the default, and per class where the class
has ``min_per_class`` detections, at least one right. The result is ``calibration.json`` beside the weights
(:mod:`inspect_core.model.calibration`, the apply side).

Expected calibration error (ECE) is measured with ``calibration.bins`` equal-width bins: the
detection-weighted mean gap between a bin's mean confidence and the share of its detections that are right.
"""

from __future__ import annotations

import filecmp
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from inspect_core.config import CalibrationSection, InspectConfig
from inspect_core.data.annotations import box_iou
from inspect_core.data.importers.florence_jsonl import ANNOTATIONS_FILE
from inspect_core.model.calibration import CALIBRATION_FILE, Calibration, Curve, load_calibration
from inspect_core.training.checkpoints import BEST, LATEST, write_text_atomic
from inspect_core.training.evaluation import SplitDetections, detect_split

if TYPE_CHECKING:
    from torch import nn
    from transformers import Florence2Processor

    from inspect_core.training.evaluation import EvaluationReport

_EPS = 1e-6  # raw scores are clipped to [eps, 1 - eps] before the logit, as Curve does when applying
_NO_EVIDENCE_THRESHOLD = 0.5  # no right detection on the split at all: flag what is more likely right than wrong


@dataclass(frozen=True)
class Samples:
    """Matched detections of one split: label, raw score, right or wrong; plus the labelled boxes per class."""

    labels: np.ndarray  # str
    raw: np.ndarray  # float
    correct: np.ndarray  # bool
    truth: dict[str, int]  # labelled boxes per class (missed ones are false negatives)
    dropped: int = 0  # detections labelled outside the vocabulary: never stored as defects, so not calibrated

    def __len__(self) -> int:
        return int(self.raw.size)

    def of(self, label: str) -> Samples:
        mask = self.labels == label
        return Samples(self.labels[mask], self.raw[mask], self.correct[mask], {label: self.truth.get(label, 0)})


def match_samples(detections: SplitDetections, iou: float) -> Samples:
    """Each detection right or wrong: a same-class labelled box overlapping it by ``iou``, not taken by a higher-scored one."""
    vocabulary = set(detections.classes)
    truth = dict.fromkeys(detections.classes, 0)
    labels, raw, correct, dropped = [], [], [], 0
    for objects, found in zip(detections.truth, detections.predictions, strict=True):
        for obj in objects:
            truth[obj.label] = truth.get(obj.label, 0) + 1
        unmatched = list(objects)
        for det in sorted(found, key=lambda d: -d.score):
            if det.label not in vocabulary:
                dropped += 1
                continue
            best = max((o for o in unmatched if o.label == det.label), key=lambda o: box_iou(o.box, det.box), default=None)
            hit = best is not None and box_iou(best.box, det.box) >= iou
            if hit:
                unmatched.remove(best)
            labels.append(det.label)
            raw.append(det.score)
            correct.append(hit)
    return Samples(np.array(labels, dtype=object), np.array(raw, dtype=float), np.array(correct, dtype=bool), truth, dropped)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(z / 2))


def fit_platt(raw: np.ndarray, correct: np.ndarray) -> Curve:
    """``sigmoid(a * logit(raw) + b)`` by Newton's method with a halving line search (converges in ~10 steps).

    The targets are Platt's (1999) smoothed ones, (right + 1) / (right + 2) and 1 / (wrong + 2): with a few
    dozen detections, or all of one kind, the plain maximum likelihood runs off to infinite slopes.
    """
    p = np.clip(np.asarray(raw, dtype=float), _EPS, 1 - _EPS)
    y = np.asarray(correct, dtype=bool)
    right, wrong = int(y.sum()), int(y.size - y.sum())
    target = np.where(y, (right + 1) / (right + 2), 1 / (wrong + 2))
    design = np.column_stack([np.log(p / (1 - p)), np.ones_like(p)])

    def loss(params: np.ndarray) -> float:
        z = design @ params
        return float(np.sum(np.logaddexp(0, z) - target * z))

    params = np.array([1.0, 0.0])  # the identity map
    current = loss(params)
    for _ in range(100):
        prob = _sigmoid(design @ params)
        gradient = design.T @ (prob - target)
        hessian = design.T @ (design * (prob * (1 - prob))[:, None]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        scale = 1.0
        while scale > 1e-10 and loss(params - scale * step) > current:
            scale /= 2
        if scale <= 1e-10:
            break
        params = params - scale * step
        current = loss(params)
        if np.max(np.abs(scale * step)) < 1e-9:
            break
    return Curve("platt", a=float(params[0]), b=float(params[1]))


def fit_isotonic(raw: np.ndarray, correct: np.ndarray) -> Curve:
    """The non-decreasing step fit of right/wrong on raw score (pool adjacent violators), kept as the blocks' end points.

    Between blocks the map is linear (``np.interp``), beyond the fitted range it is flat.
    """
    order = np.argsort(np.asarray(raw, dtype=float), kind="stable")
    x, y = np.asarray(raw, dtype=float)[order], np.asarray(correct, dtype=float)[order]
    values, starts = np.unique(x, return_index=True)  # x is sorted: each value's run starts at its first index
    sums = np.add.reduceat(y, starts) if x.size else y
    counts = np.diff(np.append(starts, x.size))
    blocks: list[list[float]] = []  # [sum, count, lowest raw, highest raw]
    for value, total, count in zip(values, sums, counts):
        blocks.append([float(total), float(count), float(value), float(value)])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]:
            total2, count2, _low, high = blocks.pop()
            blocks[-1][0] += total2
            blocks[-1][1] += count2
            blocks[-1][3] = high
    points: list[tuple[float, float]] = []
    for total, count, low, high in blocks:
        points.append((low, total / count))
        if high > low:
            points.append((high, total / count))
    return Curve("isotonic", points=tuple(points) or ((0.0, 0.0), (1.0, 1.0)))


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, bins: int) -> list[dict[str, float]]:
    """Equal-width confidence bins over [0, 1]: detections, mean confidence and share right in each (empty bins included)."""
    confidence = np.asarray(confidence, dtype=float)
    hit = np.asarray(correct, dtype=float)
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        mask = index == b
        count = int(mask.sum())
        rows.append({"low": b / bins, "high": (b + 1) / bins, "count": count,
                     "confidence": float(confidence[mask].mean()) if count else None,
                     "accuracy": float(hit[mask].mean()) if count else None})  # fmt: skip
    return rows


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int) -> float | None:
    """Sum over bins of (share of detections) x |mean confidence - share right|; None without detections."""
    rows = reliability_bins(confidence, correct, bins)
    total = sum(row["count"] for row in rows)
    if not total:
        return None
    return float(sum(row["count"] * abs(row["confidence"] - row["accuracy"]) for row in rows if row["count"]) / total)


def best_threshold(scores: np.ndarray, correct: np.ndarray, ground_truth: int, target_precision: float | None = None) -> tuple[float, dict]:
    """The operating threshold (keep scores >= it) for one class on the split, and its precision, recall and F1.

    F1 = 2 TP / (kept + labelled boxes): a labelled box no kept detection matched is a false negative.
    Candidates are the scores themselves; of equal F1 the higher threshold wins (fewer alarms for the same
    F1). With ``target_precision``: the lowest threshold whose precision reaches it, else best F1.
    """
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
    s, c = np.asarray(scores, dtype=float)[order], np.asarray(correct, dtype=bool)[order]
    last = np.r_[s[1:] != s[:-1], True]  # a threshold at s[i] keeps every detection scored s[i] or more
    tp, kept, candidates = np.cumsum(c)[last], np.arange(1, s.size + 1)[last], s[last]
    precision = tp / kept
    f1 = 2 * tp / (kept + ground_truth)
    rule = "best F1"
    if target_precision is not None:
        reaching = np.flatnonzero(precision >= target_precision)
        rule = f"lowest reaching precision {target_precision}" if reaching.size else f"best F1 (precision {target_precision} not reached)"
    pick = int(reaching[-1]) if target_precision is not None and reaching.size else int(np.argmax(f1))  # argmax: the first, highest
    recall = float(tp[pick] / ground_truth) if ground_truth else 0.0
    return float(candidates[pick]), {"rule": rule, "precision": float(precision[pick]), "recall": recall, "f1": float(f1[pick])}


def calibrated_scores(calibration: Calibration, samples: Samples) -> np.ndarray:
    return np.array([calibration.apply(label, raw) for label, raw in zip(samples.labels, samples.raw)], dtype=float)


def fit_calibration(samples: Samples, classes: list[str], settings: CalibrationSection, split: str) -> Calibration:
    """The overall curve, per-class curves where a class has enough mixed evidence, and per-class operating thresholds."""
    fit = fit_platt if settings.method == "platt" else fit_isotonic
    overall = fit(samples.raw, samples.correct)
    per_class = {}
    for label in classes:
        own = samples.of(label)
        if len(own) >= settings.min_per_class and 0 < own.correct.sum() < len(own):
            per_class[label] = fit(own.raw, own.correct)
    curves = Calibration(tuple(classes), overall, per_class)
    scores = calibrated_scores(curves, samples)
    total_truth = sum(samples.truth.values())
    if samples.correct.any():
        default, default_info = best_threshold(scores, samples.correct, total_truth, settings.target_precision)
    else:
        default, default_info = _NO_EVIDENCE_THRESHOLD, {"rule": "no right detection on the split"}
    thresholds, per_class_info = {}, {}
    for label in classes:
        mask = samples.labels == label
        curve = "own" if label in per_class else "overall"
        info: dict[str, Any] = {"detections": int(mask.sum()), "correct": int(samples.correct[mask].sum()),
                                "ground_truth": samples.truth.get(label, 0), "curve": curve}  # fmt: skip
        # Own threshold with as much evidence as an own curve needs: from 2-3 detections it is just the lowest right box's
        # score (measured: 0.96 for a class whose 2 boxes were right, while the pooled default was 0.84), dropping held-out
        # boxes scored a hair lower. A class never right on the split keeps the default too.
        if mask.sum() >= settings.min_per_class and samples.correct[mask].any():
            thresholds[label], found = best_threshold(scores[mask], samples.correct[mask], samples.truth.get(label, 0),
                                                      settings.target_precision)  # fmt: skip
            info |= {"threshold": thresholds[label], **found}
        per_class_info[label] = info
    fitted = {"split": split, "method": settings.method, "iou": settings.iou, "bins": settings.bins, "detections": len(samples),
              "correct": int(samples.correct.sum()), "ground_truth": total_truth, "dropped_out_of_vocabulary": samples.dropped,
              "ece_before": expected_calibration_error(samples.raw, samples.correct, settings.bins),
              "ece_after": expected_calibration_error(scores, samples.correct, settings.bins),
              "default_threshold": default_info, "per_class": per_class_info}  # fmt: skip
    return Calibration(tuple(classes), overall, per_class, thresholds, default, fitted)


@dataclass(frozen=True)
class CalibrationResult:
    """A fit on one split: the calibration (None when the split gave nothing to fit, with the reason) and its ECE there."""

    split: str
    calibration: Calibration | None
    samples: Samples
    skipped: str | None = None

    @property
    def ece_before(self) -> float | None:
        return self.calibration.fitted["ece_before"] if self.calibration else None

    @property
    def ece_after(self) -> float | None:
        return self.calibration.fitted["ece_after"] if self.calibration else None


def calibrate_detections(detections: SplitDetections, settings: CalibrationSection) -> CalibrationResult:
    samples = match_samples(detections, settings.iou)
    if not sum(samples.truth.values()):
        return CalibrationResult(detections.split, None, samples, f"no labelled objects in the {detections.split} split")
    if not len(samples):
        return CalibrationResult(detections.split, None, samples, f"the model found nothing of its classes in the {detections.split} split")
    return CalibrationResult(detections.split, fit_calibration(samples, detections.classes, settings, detections.split), samples)


def calibrate_split(
    model: nn.Module, processor: Florence2Processor, dataset_dir: Path, settings: CalibrationSection, batch_size: int, max_new_tokens: int,
    poses: int = 1,
) -> CalibrationResult:  # fmt: skip
    """Run the model on ``settings.split`` of a built dataset (in scoring's ``poses``) and fit on what it found."""
    found = detect_split(model, processor, dataset_dir, settings.split, batch_size, max_new_tokens, poses=poses)
    return calibrate_detections(found, settings)


def measure(calibration: Calibration, detections: SplitDetections, settings: CalibrationSection) -> dict[str, Any]:
    """ECE before and after ``calibration`` on a split (a held-out one, to be an honest figure), and where right boxes land."""
    return measure_samples(calibration, match_samples(detections, settings.iou), settings, detections.split)


def measure_samples(calibration: Calibration, samples: Samples, settings: CalibrationSection, split: str) -> dict[str, Any]:
    after = calibrated_scores(calibration, samples)
    right = samples.correct
    return {"split": split, "detections": len(samples), "correct": int(right.sum()),
            "ece_before": expected_calibration_error(samples.raw, right, settings.bins),
            "ece_after": expected_calibration_error(after, right, settings.bins),
            "correct_above_half": float((after[right] > 0.5).mean()) if right.any() else None,
            "correct_above_half_raw": float((samples.raw[right] > 0.5).mean()) if right.any() else None,
            "bins_before": reliability_bins(samples.raw, right, settings.bins),
            "bins_after": reliability_bins(after, right, settings.bins)}  # fmt: skip


def _diagram(measured: dict[str, Any], path: Path, title: str) -> str:
    from inspect_core.training.calibration_plot import plot_reliability

    path.parent.mkdir(parents=True, exist_ok=True)
    plot_reliability(measured["bins_before"], measured["bins_after"], measured["ece_before"], measured["ece_after"], path, title)
    return str(path)


def _summary(calibration: Calibration, measured: dict[str, Any]) -> dict[str, Any]:
    keep = ("split", "detections", "correct", "ece_before", "ece_after", "correct_above_half", "correct_above_half_raw")
    return {"fitted_on": calibration.fitted.get("split"), "method": calibration.fitted.get("method"),
            **{k: measured[k] for k in keep}, "held_out": calibration.fitted.get("split") != measured["split"],
            "thresholds": dict(sorted(calibration.thresholds.items())), "default_threshold": calibration.default_threshold}  # fmt: skip


def calibrate_run(config: InspectConfig, dataset_dir: Path, output_dir: Path) -> dict[str, Any] | None:
    """After training: fit on ``calibration.split`` with ``best/`` and save ``calibration.json`` into it.

    ``latest/`` gets the same file when it holds the same weights, else its own fit (a calibration belongs to
    its weights). Each file is written through a flushed temporary and renamed in, like the checkpoints.
    The reliability diagram of the fit goes to ``reliability_<split>.png`` in the run folder.
    Returns what was done (None when ``calibration.enabled`` is off), for ``metrics.json``.
    """
    import torch

    from inspect_core.model.trained_model import load_trained

    settings = config.calibration
    if not settings.enabled:
        return None
    if not (Path(dataset_dir) / settings.split / ANNOTATIONS_FILE).is_file():
        return {"skipped": f"the dataset has no {settings.split} split"}
    best, latest = Path(output_dir) / BEST, Path(output_dir) / LATEST
    if not best.is_dir():
        return {"skipped": "no best checkpoint"}
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    summary: dict[str, Any] = {"saved": []}
    for folder in (best, latest):
        if folder == latest and (not latest.is_dir() or _same_weights(best, latest)):
            if latest.is_dir() and (best / CALIBRATION_FILE).is_file():
                write_text_atomic(latest / CALIBRATION_FILE, (best / CALIBRATION_FILE).read_text())
                summary["saved"].append(str(latest / CALIBRATION_FILE))
            break
        model, processor = load_trained(folder, config.model.image_size)
        result = calibrate_split(model.to(device), processor, dataset_dir, settings, config.train.batch_size, config.train.max_new_tokens,
                                 config.score.tta_poses)  # fmt: skip
        if result.calibration is None:
            summary.setdefault("skipped", result.skipped)
            continue
        write_text_atomic(folder / CALIBRATION_FILE, json.dumps(result.calibration.to_dict(), indent=2) + "\n")
        summary["saved"].append(str(folder / CALIBRATION_FILE))
        if folder == best:
            fitted = measure_samples(result.calibration, result.samples, settings, settings.split)
            summary |= _summary(result.calibration, fitted)
            diagram = Path(output_dir) / f"reliability_{settings.split}.png"
            summary["diagram"] = _diagram(fitted, diagram, f"best/ on {settings.split} (the split it was fitted on)")
    return summary


def _same_weights(a: Path, b: Path) -> bool:
    names = ("adapter_model.safetensors", "model.safetensors")
    return any((a / n).is_file() and (b / n).is_file() and filecmp.cmp(a / n, b / n, shallow=False) for n in names)


def evaluation_calibration(
    model: nn.Module, processor: Florence2Processor, model_name: str | Path, dataset_dir: Path, report: EvaluationReport,
    config: InspectConfig, plots: Path | None, fit: bool,
) -> dict[str, Any] | None:  # fmt: skip
    """The ``calibration`` part of an evaluation report: ECE before and after on the evaluated split.

    ``fit``: fit on ``calibration.split`` first (reusing the evaluation's detections when it is the same
    split) and save ``calibration.json`` when the model is a local folder. Without ``fit``, a model that
    carries a calibration has it measured; one without gets None.
    """
    settings = config.calibration
    folder = Path(model_name) if Path(model_name).is_dir() else None
    saved = diagram_dir = None
    if fit:
        if report.od is not None and report.od.split == settings.split:
            result = calibrate_detections(report.od, settings)
        else:
            result = calibrate_split(model, processor, dataset_dir, settings, config.train.batch_size, config.train.max_new_tokens,
                                     config.score.tta_poses)  # fmt: skip
        if result.calibration is None:
            return {"fitted_on": settings.split, "skipped": result.skipped, "saved": None}
        calibration = result.calibration
        saved = str(calibration.save(folder)) if folder is not None else None
        diagram_dir = plots if plots is not None else folder
    else:
        calibration = load_calibration(folder) if folder is not None else None
        if calibration is None:
            return None
        diagram_dir = plots
    if report.od is None or not any(report.od.truth):
        return {"fitted_on": calibration.fitted.get("split"), "skipped": f"no labelled objects in the {report.split} split", "saved": saved}
    measured = measure(calibration, report.od, settings)
    summary = _summary(calibration, measured) | {"saved": saved, "diagram": None}
    if diagram_dir is not None:
        title = f"{folder.name if folder else model_name} on {report.split}"
        summary["diagram"] = _diagram(measured, Path(diagram_dir) / f"reliability_{report.split}.png", title)
    return summary

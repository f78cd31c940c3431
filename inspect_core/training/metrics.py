"""Class-aware COCO mAP (faster-coco-eval), per class, from detections with real confidences."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from faster_coco_eval import COCO, COCOeval_faster

from inspect_core.data.annotations import DefectObject, box_iou
from inspect_core.inference.detector import Detection


@dataclass(frozen=True)
class MapResult:
    map50: float
    map50_95: float
    per_class: dict[str, dict[str, float]]  # class -> {"ap50": .., "ap50_95": .., "instances": ..}
    pr_curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # class -> recall, precision at IoU 0.5

    def as_dict(self) -> dict:
        return {"map50": self.map50, "map50_95": self.map50_95, "per_class": self.per_class}


def _xywh(box: tuple[float, float, float, float]) -> list[float]:
    x1, y1, x2, y2 = box
    return [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]


def detection_map(
    ground_truth: Sequence[Sequence[DefectObject]], predictions: Sequence[Sequence[Detection]], classes: Sequence[str]
) -> MapResult:
    """mAP@50 and mAP@50:95 over ``classes``; predicted labels outside ``classes`` count as misses."""
    class_ids = {name: index + 1 for index, name in enumerate(classes)}
    images, annotations, results = [], [], []
    for image_id, (truth, predicted) in enumerate(zip(ground_truth, predictions, strict=True), start=1):
        images.append({"id": image_id, "width": 1, "height": 1})
        for obj in truth:
            x, y, w, h = _xywh(obj.box)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": class_ids[obj.label],
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})  # fmt: skip
        for det in predicted:
            if det.label in class_ids:
                results.append({"image_id": image_id, "category_id": class_ids[det.label], "bbox": _xywh(det.box), "score": det.score})
    instances = {name: sum(1 for a in annotations if a["category_id"] == cid) for name, cid in class_ids.items()}
    if not annotations:
        raise ValueError("no ground-truth objects: mAP is undefined")
    truth_coco = COCO()
    truth_coco.dataset = {"images": images, "annotations": annotations, "categories": [{"id": i, "name": n} for n, i in class_ids.items()]}
    truth_coco.createIndex()
    if not results:
        zero = {"ap50": 0.0, "ap50_95": 0.0}
        return MapResult(0.0, 0.0, {n: zero | {"instances": instances[n]} for n in classes})
    with contextlib.redirect_stdout(io.StringIO()):
        predicted_coco = truth_coco.loadRes(results)
        evaluation = COCOeval_faster(truth_coco, predicted_coco, iouType="bbox")
        evaluation.params.maxDets = [1, 10, 100]
        evaluation.evaluate()
        evaluation.accumulate()
    precision = evaluation.eval["precision"]  # [iou thresholds, recall points, classes, areas, max dets]

    def average(values: np.ndarray) -> float:
        valid = values[values > -1]
        return float(valid.mean()) if valid.size else 0.0

    per_class, pr_curves = {}, {}
    recall = [float(r) for r in evaluation.params.recThrs]
    for name, cid in class_ids.items():
        k = evaluation.params.catIds.index(cid)
        if instances[name]:
            pr_curves[name] = {"recall": recall, "precision": [max(0.0, float(p)) for p in precision[0, :, k, 0, -1]]}
        per_class[name] = {
            "ap50": average(precision[0, :, k, 0, -1]),
            "ap50_95": average(precision[:, :, k, 0, -1]),
            "instances": instances[name],
        }
    present = [v for v in per_class.values() if v["instances"]]
    return MapResult(
        map50=float(np.mean([v["ap50"] for v in present])),
        map50_95=float(np.mean([v["ap50_95"] for v in present])),
        per_class=per_class,
        pr_curves=pr_curves,
    )


def agnostic_recall(
    ground_truth: Sequence[Sequence[DefectObject]], predictions: Sequence[Sequence[Detection]], iou: float = 0.5, min_score: float = 0.0
) -> dict[str, float | int]:
    """Share of true defects found at ``iou``, whatever class either side names: "did it find the defect?".

    Detections at or above ``min_score`` are matched greedily, highest confidence first, each to the
    unmatched true box it overlaps most (at least ``iou``); each true box is found at most once.
    Also returns the precision of the same matching (found / detections).
    """
    found = detections = total = 0
    for truth, predicted in zip(ground_truth, predictions, strict=True):
        unmatched = [o.box for o in truth]
        total += len(unmatched)
        kept = sorted((d for d in predicted if d.score >= min_score), key=lambda d: -d.score)
        detections += len(kept)
        for det in kept:
            best = max(unmatched, key=lambda box: box_iou(box, det.box), default=None)
            if best is not None and box_iou(best, det.box) >= iou:
                unmatched.remove(best)
                found += 1
    return {"recall": found / total if total else float("nan"), "precision": found / detections if detections else 0.0,
            "found": found, "objects": total, "detections": detections}  # fmt: skip

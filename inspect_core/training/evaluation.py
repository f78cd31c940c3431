"""Evaluate a model on one split of a built dataset.

- ``<OD>``: class-aware COCO mAP@50 and mAP@50:95, per class (faster-coco-eval), ranked by real
  token-probability confidences; a confusion matrix and precision-recall curves as PNGs.
- ``<DENSE_REGION_CAPTION>`` / ``<CAPTION_TO_PHRASE_GROUNDING>``: the generated text (loc tokens
  removed) against the reference, as WER and CER (jiwer) and normalised Levenshtein similarity.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import jiwer
import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image
from rapidfuzz.distance import Levenshtein
from torch import nn
from transformers import Florence2Processor

from inspect_core.data.annotations import DefectObject, box_iou
from inspect_core.inference.detector import Detection, detect
from inspect_core.inference.poses import detect_in_poses
from inspect_core.training.data import FlorenceTaskDataset
from inspect_core.training.metrics import MapResult, detection_map

_LOC = re.compile(r"<loc_\d+>")
MATCH_IOU = 0.5


@dataclass(frozen=True)
class SplitDetections:
    """A split's ``<OD>`` records: ground truth and the model's detections, image by image (evaluation and calibration share it)."""

    split: str
    classes: list[str]
    truth: list[tuple[DefectObject, ...]]
    predictions: list[list[Detection]]


@dataclass
class EvaluationReport:
    split: str
    images: int
    detection: MapResult | None
    text: dict[str, dict[str, float]] = field(default_factory=dict)
    plots: list[str] = field(default_factory=list)
    calibration: dict | None = None  # ECE before/after on this split, thresholds, diagram (pipeline.evaluate)
    od: SplitDetections | None = field(default=None, repr=False)  # the <OD> detections behind ``detection`` (not serialised)

    def as_dict(self) -> dict:
        return {
            "split": self.split,
            "images": self.images,
            "detection": self.detection.as_dict() if self.detection else None,
            "text": self.text,
            "plots": self.plots,
            "calibration": self.calibration,
        }


def confusion_matrix(truth: list[tuple[DefectObject, ...]], predictions: list[list[Detection]], classes: list[str]) -> np.ndarray:
    """Rows: true class or background (last); columns: predicted class or background (missed)."""
    index = {c: i for i, c in enumerate(classes)}
    background = len(classes)
    matrix = np.zeros((len(classes) + 1, len(classes) + 1), dtype=int)
    for objects, detections in zip(truth, predictions):
        unmatched = list(objects)
        for det in sorted(detections, key=lambda d: -d.score):
            best = max(unmatched, key=lambda o: box_iou(o.box, det.box), default=None)
            predicted = index.get(det.label, background)
            if best is not None and box_iou(best.box, det.box) >= MATCH_IOU:
                unmatched.remove(best)
                matrix[index[best.label], predicted] += 1
            else:
                matrix[background, predicted] += 1
        for obj in unmatched:
            matrix[index[obj.label], background] += 1
    return matrix


def _plot_confusion(matrix: np.ndarray, classes: list[str], path: Path) -> None:
    names = [*classes, "background"]
    fig = Figure(figsize=(1.2 * len(names) + 2, 1.2 * len(names) + 1))
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (row, col), value in np.ndenumerate(matrix):
        ax.text(col, row, str(value), ha="center", va="center", color="black")
    ax.set_title("confusion matrix (IoU >= 0.5)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _plot_pr(detection: MapResult, path: Path) -> None:
    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
    for name, curve in detection.pr_curves.items():
        ax.plot(curve["recall"], curve["precision"], label=f"{name} (AP50 {detection.per_class[name]['ap50']:.2f})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title("precision-recall at IoU 0.5")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _text_metrics(references: list[str], hypotheses: list[str]) -> dict[str, float]:
    refs = [r or "<empty>" for r in references]
    hyps = [h or "<empty>" for h in hypotheses]
    return {
        "wer": float(jiwer.wer(refs, hyps)),
        "cer": float(jiwer.cer(refs, hyps)),
        "levenshtein_similarity": float(np.mean([Levenshtein.normalized_similarity(r, h) for r, h in zip(refs, hyps)])),
        "records": len(refs),
    }


def _strip_locs(text: str) -> str:
    return " ".join(_LOC.sub(" ", text).split())


@torch.inference_mode()
def _generate_text(
    model: nn.Module, processor: Florence2Processor, pixels: list[np.ndarray], prompts: list[str], max_new_tokens: int
) -> list[str]:
    inputs = processor(text=prompts, images=[Image.fromarray(p) for p in pixels], return_tensors="pt", padding=True)
    inputs = {k: v.to(model.device) for k, v in inputs.items()}
    ids = model.generate(**inputs, max_new_tokens=max_new_tokens, num_beams=1, do_sample=False)
    return processor.batch_decode(ids, skip_special_tokens=False)


def _by_task(data: FlorenceTaskDataset) -> dict[str, list[int]]:
    by_task: dict[str, list[int]] = {}
    for index, record in enumerate(data.records):
        by_task.setdefault(record.task, []).append(index)
    return by_task


@torch.inference_mode()
def detect_split(
    model: nn.Module, processor: Florence2Processor, dataset_dir: Path, split: str, batch_size: int = 8, max_new_tokens: int = 128,
    data: FlorenceTaskDataset | None = None, poses: int = 1,
) -> SplitDetections:  # fmt: skip
    """Run ``<OD>`` on every OD record of ``split``, in batches; the classes are the built dataset's vocabulary.

    ``poses`` is scoring's ``score.tta_poses``: each image asked in that many poses, the boxes fused
    (:mod:`inspect_core.inference.poses`), so evaluation and calibration see what scoring will store.
    """
    model.eval()
    data = data if data is not None else FlorenceTaskDataset(dataset_dir, split)
    classes = json.loads((Path(dataset_dir) / "dataset.json").read_text())["classes"]
    od = _by_task(data).get("od", [])
    truth: list[tuple[DefectObject, ...]] = []
    predictions: list[list[Detection]] = []
    for start in range(0, len(od), batch_size):
        chunk = od[start : start + batch_size]
        images = [data[i][0] for i in chunk]
        predictions.extend(detect_in_poses(lambda posed: detect(model, processor, posed, "<OD>", max_new_tokens=max_new_tokens),
                                           images, poses))  # fmt: skip
        truth.extend(tuple(data.annotation(i).objects) for i in chunk)
    return SplitDetections(split, list(classes), truth, predictions)


def evaluate_split(
    model: nn.Module,
    processor: Florence2Processor,
    dataset_dir: Path,
    split: str = "test",
    batch_size: int = 8,
    max_new_tokens: int = 128,
    plots_dir: Path | None = None,
    poses: int = 1,
) -> EvaluationReport:
    """Score ``split``: OD detection metrics (``<OD>`` asked in ``poses`` poses) and text metrics for the other tasks present."""
    model.eval()
    data = FlorenceTaskDataset(dataset_dir, split)
    by_task = _by_task(data)
    report = EvaluationReport(split=split, images=len(by_task.get("od", [])), detection=None)
    if by_task.get("od"):
        report.od = detect_split(model, processor, dataset_dir, split, batch_size, max_new_tokens, data, poses)
        truth, predictions, classes = report.od.truth, report.od.predictions, report.od.classes
        if any(truth):
            report.detection = detection_map(truth, predictions, classes)
            if plots_dir is not None:
                plots_dir.mkdir(parents=True, exist_ok=True)
                _plot_confusion(confusion_matrix(truth, predictions, classes), classes, plots_dir / f"confusion_{split}.png")
                _plot_pr(report.detection, plots_dir / f"pr_curves_{split}.png")
                report.plots = [str(plots_dir / f"confusion_{split}.png"), str(plots_dir / f"pr_curves_{split}.png")]
    for task in ("dense", "grounding"):
        indices = by_task.get(task, [])
        if not indices:
            continue
        references, hypotheses = [], []
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            items = [data[i] for i in chunk]
            generated = _generate_text(model, processor, [p for p, _x, _s in items], [x for _p, x, _s in items], max_new_tokens)
            references.extend(_strip_locs(s) for _p, _x, s in items)
            hypotheses.extend(_strip_locs(re.sub(r"</?s>|<pad>", "", g)) for g in generated)
        report.text[task] = _text_metrics(references, hypotheses)
    return report

"""An oracle for synthetic labels that does not trust the generator: compare each label box with the pixels
that actually changed between a sample and the same sample rendered without defects."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from inspect_core.data.annotations import DefectObject


@dataclass
class BoxCheck:
    checked: list[tuple[str, float]] = field(default_factory=list)  # label, IoU of the changed-pixel box with the label box
    problems: list[str] = field(default_factory=list)


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _grown(box: tuple[float, ...], by: float, width: int, height: int) -> tuple[int, int, int, int]:
    return (
        max(int(box[0] - by), 0),
        max(int(box[1] - by), 0),
        min(int(np.ceil(box[2] + by)), width),
        min(int(np.ceil(box[3] + by)), height),
    )


def _overlap(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def check_boxes(
    image: np.ndarray, clean: np.ndarray, objects: tuple[DefectObject, ...], tolerance: float, level: int, where: str, result: BoxCheck
) -> None:
    """Each isolated label's box must lie within ``tolerance`` px (every edge) of the box of the pixels that changed
    by ``level`` or more around it; no pixel may change farther than ``tolerance`` from every label."""
    height, width = image.shape[:2]
    changed = np.abs(image.astype(np.int16) - clean.astype(np.int16)).max(axis=2) >= level
    grown = [_grown(o.box, tolerance, width, height) for o in objects]
    covered = np.zeros(changed.shape, bool)
    for x1, y1, x2, y2 in grown:
        covered[y1:y2, x1:x2] = True
    if (changed & ~covered).any():
        ys, xs = np.nonzero(changed & ~covered)
        result.problems.append(f"{where}: {len(ys)} px changed away from every label, e.g. at x={xs[0]}, y={ys[0]}")
    for i, obj in enumerate(objects):
        if any(_overlap(grown[i], other) for j, other in enumerate(grown) if j != i):
            continue  # the pixels near it could be another defect's
        x1, y1, x2, y2 = grown[i]
        ys, xs = np.nonzero(changed[y1:y2, x1:x2])
        if ys.size == 0:
            result.problems.append(f"{where}: {obj.label} {obj.box}: no pixel changed there")
            continue
        seen = (float(x1 + xs.min()), float(y1 + ys.min()), float(x1 + xs.max() + 1), float(y1 + ys.max() + 1))
        worst = max(abs(a - b) for a, b in zip(seen, obj.box))
        if worst > tolerance:
            result.problems.append(f"{where}: {obj.label} label {obj.box} vs changed pixels {seen}")
        result.checked.append((obj.label, _iou(seen, obj.box)))

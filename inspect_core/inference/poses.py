"""Test-time poses: score a crop as it is and flipped or turned, map every box back and fuse them.

Why: cloth has no up, so a defect looks like a defect in all eight poses of the square (flips and
turns by 90 degrees), and the few-shot recipe trains on all eight. A model trained on tens of
photographs finds a defect in one pose and misses it in another; asking in several poses and fusing
the answers finds more of them (``benchmarks/real_fabric.py`` measures it on the same trained
checkpoints with and without poses). The cost is one more decoding pass per pose.

``score.tta_poses`` picks how many: 1 (off), 2 (+ left-right flip), 4 (+ up-down flip and the half
turn) or 8 (+ both quarter turns and both diagonal flips). Boxes are fused per class by weighted box
fusion (Solovyev et al., 2019): boxes of one class that overlap a cluster's fused box by IoU >= 0.55
join it; the fused box is their confidence-weighted mean, and its confidence is their mean
confidence times the share of poses that found it (capped at 1). So a box every pose agrees on
keeps its confidence, and one found in a single pose of four keeps a quarter of it: operating
thresholds and calibration apply to the fused confidence as they did to the plain one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from inspect_core.data.annotations import Box, box_iou
from inspect_core.inference.detector import Detection

# (k quarter turns counter-clockwise, then flip left-right): the eight poses of the square, in the order they are added
POSES: tuple[tuple[int, bool], ...] = ((0, False), (0, True), (2, True), (2, False), (1, False), (3, False), (1, True), (3, True))
POSE_COUNTS = (1, 2, 4, 8)
FUSE_IOU = 0.55


def posed(image: np.ndarray, pose: tuple[int, bool]) -> np.ndarray:
    """``image`` (H x W x C) in ``pose``: turned ``k`` quarter turns counter-clockwise (``np.rot90``), then mirrored."""
    turns, mirror = pose
    out = np.rot90(image, turns)
    return np.ascontiguousarray(out[:, ::-1] if mirror else out)


def unposed_box(box: Box, pose: tuple[int, bool], width: int, height: int) -> Box:
    """A box found on the posed image, in the pixels of the original ``width`` x ``height`` image."""
    turns, mirror = pose[0] % 4, pose[1]
    w, h = (height, width) if turns % 2 else (width, height)  # the posed image's sides: a quarter turn swaps them
    xs, ys = np.array([box[0], box[2]], np.float64), np.array([box[1], box[3]], np.float64)
    if mirror:
        xs = w - xs
    for _ in range(turns):  # undo one counter-clockwise quarter turn: it took (x, y) on a W-wide image to (y, W - x)
        xs, ys = h - ys, xs  # the image before it was h wide (its height now) and w high
        w, h = h, w
    return (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))


@dataclass
class _Cluster:
    label: str
    members: list[Detection]

    @property
    def box(self) -> Box:
        weights = np.array([d.score for d in self.members], dtype=np.float64)
        boxes = np.array([d.box for d in self.members], dtype=np.float64)
        return tuple(float(v) for v in (weights[:, None] * boxes).sum(0) / max(weights.sum(), 1e-12))  # type: ignore[return-value]


def fuse(found: Sequence[Sequence[Detection]], iou: float = FUSE_IOU) -> list[Detection]:
    """Weighted box fusion of one image's detections from ``len(found)`` poses (boxes already in original pixels)."""
    poses = len(found)
    if poses == 1:
        return list(found[0])
    clusters: list[_Cluster] = []
    for detection in sorted((d for group in found for d in group), key=lambda d: -d.score):
        fused = [(box_iou(c.box, detection.box), c) for c in clusters if c.label == detection.label]
        overlap, best = max(fused, key=lambda pair: pair[0], default=(0.0, None))
        if best is not None and overlap >= iou:
            best.members.append(detection)
        else:
            clusters.append(_Cluster(detection.label, [detection]))
    out = []
    for cluster in clusters:
        mean = sum(d.score for d in cluster.members) / len(cluster.members)
        out.append(Detection(cluster.label, cluster.box, mean * min(len(cluster.members), poses) / poses))
    return sorted(out, key=lambda d: -d.score)


def _checked(count: int) -> int:
    if count not in POSE_COUNTS:
        raise ValueError(f"score.tta_poses must be one of {', '.join(map(str, POSE_COUNTS))}, not {count}")
    return count


def detect_in_poses(
    detect: Callable[[list[np.ndarray]], list[list[Detection]]], images: Sequence[np.ndarray], count: int
) -> list[list[Detection]]:  # fmt: skip
    """``detect`` (images in, detections in their pixels out) asked in ``count`` poses of every image, fused per image."""
    if _checked(count) == 1:
        return detect(list(images))
    poses = POSES[:count]
    every = [posed(image, pose) for image in images for pose in poses]
    # in the caller's batch size: 8 poses of a batch of 8 is 64 images, too many at once for a large model's memory
    answers = [found for start in range(0, len(every), len(images)) for found in detect(every[start : start + len(images)])]
    fused = []
    for index, image in enumerate(images):
        height, width = image.shape[:2]
        mine = answers[index * count : (index + 1) * count]
        fused.append(fuse([[Detection(d.label, unposed_box(d.box, pose, width, height), d.score) for d in group]
                           for group, pose in zip(mine, poses)]))  # fmt: skip
    return fused


class PosedDetector:
    """A scoring backend (``Detector``) asked in ``count`` poses of every crop, its answers fused; torch and ONNX alike."""

    def __init__(self, inner, count: int) -> None:
        self.inner, self.count = inner, _checked(count)
        self.input_size = inner.input_size

    def __call__(self, crops: Sequence[np.ndarray], max_new_tokens: int, num_beams: int) -> list[list[Detection]]:
        return detect_in_poses(lambda images: self.inner(images, max_new_tokens, num_beams), crops, self.count)


def with_poses(detector, count: int):
    """``detector`` itself for one pose, else wrapped in :class:`PosedDetector`."""
    return detector if count == 1 else PosedDetector(detector, count)

"""Tiles for large or line-scan images, and merging the boxes found in overlapping tiles.

A 4096x256 strip squeezed into a square model input loses the small defects; cut into overlapping
square tiles each keeps its resolution. A defect on a tile border is seen whole (or in part) by the
neighbouring tile too, so the copies are fused per class, in strip coordinates.

Scoring and ``predict`` share one path: :func:`plan_tiles` (the windows, and the cloth when
``score.mask_margins``: tiles wholly in a strip's blank margin are not sent to the model),
:func:`window_crops` (the model's input) and :func:`place_detections` (boxes back in image pixels,
merged, those mostly in the margin dropped), so a box ``predict`` shows is the box ``score`` stores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from inspect_core.data.annotations import Box
from inspect_core.errors import UsageError
from inspect_core.inference.cloth_region import ClothRegion, find_cloth
from inspect_core.inference.detector import Detection

if TYPE_CHECKING:
    from inspect_core.config import ScoreSection

Window = tuple[int, int, int, int]

# Each tile is one model call: 100 tiles make one frame cost 100 whole frames (a 4096x4096 frame cut into
# 512 px tiles at 20 % overlap is exactly 100). Beyond that one odd frame stalls the line: an 8000x16
# strip tiled at its own 16 px height was 616 tiles and 155 s. Such images get coarser (wider) tiles.
MAX_TILES_PER_IMAGE = 100


def _starts(length: int, tile: int, overlap: float) -> list[int]:
    if length <= tile:
        return [0]
    stride = max(1, int(round(tile * (1 - overlap))))
    return [*range(0, length - tile, stride), length - tile]


def _count(width: int, height: int, tile: int, overlap: float) -> int:
    return len(_starts(width, tile, overlap)) * len(_starts(height, tile, overlap))


def capped_tile(width: int, height: int, tile: int, overlap: float, max_tiles: int = MAX_TILES_PER_IMAGE) -> int:
    """The smallest tile side >= ``tile`` that covers the image in at most ``max_tiles`` windows.

    For ordinary frames that is ``tile`` itself; an extreme aspect ratio (a strip thousands of pixels
    long and a few high) gets wider windows, clipped to the image height, instead of hundreds of them.
    """
    if _count(width, height, tile, overlap) <= max_tiles:
        return tile
    low, high = tile, max(width, height, tile)  # one window of the longest side always fits
    while low < high:  # the count falls as the side grows (rounding of the stride aside: checked below)
        middle = (low + high) // 2
        low, high = (low, middle) if _count(width, height, middle, overlap) <= max_tiles else (middle + 1, high)
    while _count(width, height, low, overlap) > max_tiles:
        low += 1
    return low


def tile_windows(
    width: int, height: int, tile: int, overlap: float = 0.2, max_tiles: int = MAX_TILES_PER_IMAGE
) -> list[tuple[int, int, int, int]]:
    """Square windows ``(x0, y0, x1, y1)`` of side ``tile`` (clipped to the image) covering it, overlapping by ``overlap``.

    The last window in each direction is shifted back inside the image, so no window is partial
    unless the image is smaller than a tile. At most ``max_tiles`` windows: past that the side grows
    (:func:`capped_tile`).
    """
    if tile < 1 or not 0 <= overlap < 1 or max_tiles < 1:
        raise UsageError(f"tile must be >= 1 px, overlap within [0, 1) and max tiles >= 1, got {tile}, {overlap} and {max_tiles}")
    tile = capped_tile(width, height, tile, overlap, max_tiles)
    xs, ys = _starts(width, tile, overlap), _starts(height, tile, overlap)
    return [(x, y, min(x + tile, width), min(y + tile, height)) for y in ys for x in xs]


def _overlap_of_smaller(a: Box, b: Box) -> float:
    """Intersection over the smaller box's area: 1.0 when one box holds the other."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return w * h / max(smaller, 1e-9)


def merge_tile_detections(detections: Sequence[Detection], threshold: float = 0.5) -> list[Detection]:
    """Fuse, per class, the boxes that are one defect seen from several tiles.

    A tile border cuts a defect into a piece that lies inside the whole box its neighbour saw (or,
    for a defect longer than the overlap, two pieces that share the overlap strip). Plain IoU between
    such boxes is low, so boxes are grouped by intersection over the smaller box; a group becomes
    the union box with the highest confidence in it.
    """
    merged: list[Detection] = []
    for detection in sorted(detections, key=lambda d: -d.score):
        for i, kept in enumerate(merged):
            if kept.label == detection.label and _overlap_of_smaller(kept.box, detection.box) > threshold:
                a, b = kept.box, detection.box
                union = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                merged[i] = Detection(kept.label, union, kept.score)
                break
        else:
            merged.append(detection)
    return merged


def to_image_coordinates(detections: Sequence[Detection], window: tuple[int, int, int, int], scale: tuple[float, float]) -> list[Detection]:
    """Boxes found in a (resized) window, mapped back to the full image's pixels."""
    x0, y0 = window[0], window[1]
    sx, sy = scale

    def place(box: Box) -> Box:
        return (x0 + box[0] * sx, y0 + box[1] * sy, x0 + box[2] * sx, y0 + box[3] * sy)

    return [Detection(d.label, place(d.box), d.score) for d in detections]


@dataclass(slots=True)
class TilePlan:
    """How one image is looked at: the windows sent to the model and, when margins are masked, where the cloth is."""

    width: int
    height: int
    windows: list[Window]
    tiled: bool = False  # cut into more than one window (before any was skipped): their boxes are merged
    cloth: ClothRegion | None = None  # None: nothing masked
    skipped: int = 0  # windows wholly outside the cloth, never sent to the model


def plan_tiles(pixels: np.ndarray, settings: ScoreSection, tile: bool) -> TilePlan:
    """The windows of ``pixels``: the whole image, or (``tile``) overlapping tiles of ``settings.tile_size``.

    With ``settings.mask_margins`` a tiled image's cloth is found (:func:`find_cloth`) and the tiles
    sharing no pixel with it are dropped from the plan. Untiled images are one window and unmasked:
    margins are a line-scan strip's, and strips are scored tiled.
    """
    height, width = pixels.shape[:2]
    if not tile:
        return TilePlan(width, height, [(0, 0, width, height)])
    windows = tile_windows(width, height, settings.tile_size or min(width, height), settings.tile_overlap)
    if not settings.mask_margins:
        return TilePlan(width, height, windows, tiled=len(windows) > 1)
    cloth = find_cloth(pixels)
    kept = [w for w in windows if cloth.touches(w)]
    return TilePlan(width, height, kept, tiled=len(windows) > 1, cloth=cloth, skipped=len(windows) - len(kept))


def window_crops(pixels: np.ndarray, windows: Sequence[Window], input_size: int) -> list[np.ndarray]:
    """Each window cut out and resized (bicubic) to the model's square input."""
    size = (input_size, input_size)
    return [cv2.resize(pixels[y0:y1, x0:x1], size, interpolation=cv2.INTER_CUBIC) for x0, y0, x1, y1 in windows]


def place_detections(plan: TilePlan, found: Sequence[Sequence[Detection]], input_size: int, merge_overlap: float) -> list[Detection]:
    """Detections per window (in model-input pixels) as one list in image pixels: margin boxes dropped, tiles merged."""
    placed: list[Detection] = []
    for window, detections in zip(plan.windows, found):
        scale = ((window[2] - window[0]) / input_size, (window[3] - window[1]) / input_size)
        placed.extend(to_image_coordinates(detections, window, scale))
    if plan.cloth is not None:  # before merging: an answer about the margin never widens a box on the cloth
        placed = [d for d in placed if plan.cloth.holds(d.box)]
    return merge_tile_detections(placed, merge_overlap) if plan.tiled else placed

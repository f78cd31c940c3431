"""Held-out synthetic fabric: a second, independently written generator family that pretraining never sees.

Why it exists: a detector pretrained on one generator can learn that generator rather than defects.
Issue 15 measured it: the shipped base scored mAP@50 0.74 on the project's own generator and 0.52 on
an independent one (broken yarn 0.035). Scores on fresh images of the training generator, even with a
new seed, say nothing about that; a fair test needs images whose cloth, defects and camera were made
another way, by code that training never ran. ``dataset synth --style heldout`` writes them, and
``benchmarks/base_generalisation.py`` reports the base on them beside the other styles.

How it differs from the project's generators (``cloth`` + ``defects``, the default
style; ``random_*`` + ``photo``, the randomised one):

- Cloth (``heldout_cloth``) by texture synthesis instead of yarn geometry: Gabor noise (band-passed
  white noise, FFT), felt from drawn fibres, knit from a tiled stitch sprite, corduroy ridges; prints
  over a quarter of them; colours drawn in CIE Lab.
- Defects (``heldout_defects``) drawn as shapes on the whole image: supersampled polygons with fibres
  across the rim, thresholded multi-octave noise, antialiased polylines with curled ends, clusters of
  shaded beads, and wrinkles as a geometric displacement of the cloth (remap) rather than shading.
- Placement: a defect may not touch what an earlier one changed (pixel masks, 5 px apart), where
  the project's generators compare boxes.
- Camera (here): cos^4 lens shading, lateral chromatic aberration, photon (shot) noise at a random
  full well, PIL's Gaussian blur and PIL's JPEG encoder with random chroma subsampling.

What it shares, and must: the label set (hole, stain, broken_yarn, wrinkle, knot) with the same
meaning; boxes around what visibly changed (>= ``CHANGE_THRESHOLD`` in a channel, and only defects
that show clearly somewhere, ``MIN_PEAK_CHANGE``); broken-yarn boxes
at least 3 % of the side thick (the project's labelling convention, re-implemented here); the VOC
writer of ``dataset synth``. It imports nothing from the other generators (a test checks it in a
fresh interpreter). Its seed sequence is ``[seed, index, 7919]``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageFilter

from inspect_core.data.annotations import Box, DefectObject, sort_objects
from inspect_core.data.synth.heldout_cloth import Canvas, make_canvas
from inspect_core.data.synth.heldout_defects import DRAWERS

CLASSES: tuple[str, ...] = ("hole", "stain", "broken_yarn", "wrinkle", "knot")
CHANGE_THRESHOLD = 0.07
# A held-out defect must show clearly somewhere (peak change, 0-1): a test that scores a model on defects a person
# would not see (a fold on dark fine cloth peaking at 20 of 255 levels was one) measures nothing fair.
MIN_PEAK_CHANGE = 0.15
LINE_THICKNESS = 0.03  # broken-yarn boxes: at least this fraction of the side thick
_SEED_KEY = 7919
_TRIES = 5
_MIN_PIXELS = 6
_APART_PX = 5
_WORDS = {"canvas": "canvas", "felt": "felt", "knit": "knitted", "cord": "corduroy"}


@dataclass(frozen=True)
class HeldoutSample:
    image: np.ndarray  # H x W x 3 uint8 RGB
    objects: tuple[DefectObject, ...]
    caption: str
    texture: str  # canvas | felt | knit | cord


def _box(changed: np.ndarray) -> Box:
    rows, cols = np.nonzero(changed)
    return (float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1))


def _thicken(box: Box, side: int) -> Box:
    """A line's box widened to the minimum thickness on each too-thin side, centred, inside the image."""
    least = LINE_THICKNESS * side
    spans = []
    for lo, hi in ((box[0], box[2]), (box[1], box[3])):
        if hi - lo < least:
            lo = float(np.clip((lo + hi) / 2 - least / 2, 0, side - least))
            hi = lo + least
        spans.append((lo, hi))
    return (spans[0][0], spans[1][0], spans[0][1], spans[1][1])


def _polygon(changed: np.ndarray, box: Box) -> tuple[tuple[float, float], ...] | None:
    """Outline of the largest changed part, gaps of a pixel closed, never outside the box."""
    x1, y1, x2, y2 = (int(v) for v in box)
    inside = changed[y1:y2, x1:x2].astype(np.uint8)
    closed = np.zeros(changed.shape, np.uint8)
    closed[y1:y2, x1:x2] = cv2.erode(cv2.dilate(inside, np.ones((3, 3), np.uint8)), np.ones((3, 3), np.uint8)) | inside
    contours, _ = cv2.findContours(closed, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    largest = max(contours, key=cv2.contourArea)
    simple = cv2.approxPolyDP(largest, 1.5, True).reshape(-1, 2)
    return tuple((float(x) + 0.5, float(y) + 0.5) for x, y in simple) if len(simple) >= 3 else None


def _where(box: Box, side: int) -> str:
    cx, cy = (box[0] + box[2]) / 2 / side, (box[1] + box[3]) / 2 / side
    row = "upper" if cy < 1 / 3 else "lower" if cy > 2 / 3 else "middle"
    column = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else "centre"
    return "at the centre" if (row, column) == ("middle", "centre") else f"at the {row} {column}"


def _defects(rng: np.random.Generator, canvas: Canvas, max_defects: int, clean_fraction: float) -> list[DefectObject]:
    count = 0 if max_defects == 0 or rng.random() < clean_fraction else int(rng.integers(1, max_defects + 1))
    taken = np.zeros((canvas.side, canvas.side), bool)
    near = np.ones((2 * _APART_PX + 1, 2 * _APART_PX + 1), np.uint8)
    objects = []
    for _ in range(count):
        label = CLASSES[rng.integers(len(CLASSES))]
        for _ in range(_TRIES):
            rgb, phrase = DRAWERS[label](rng, canvas)
            change = np.abs(rgb - canvas.rgb).max(axis=2)
            changed = change >= CHANGE_THRESHOLD
            if changed.sum() < _MIN_PIXELS or float(change.max()) < MIN_PEAK_CHANGE:
                continue
            if (changed & (cv2.dilate(taken.astype(np.uint8), near) > 0)).any():
                continue
            canvas.rgb, taken = rgb.astype(np.float32), taken | changed
            box = _box(changed)
            polygon = _polygon(changed, box) if label in ("hole", "stain", "wrinkle") else None
            if label == "broken_yarn":
                box = _thicken(box, canvas.side)
            objects.append(DefectObject(label, box, polygon, f"{phrase} {_where(box, canvas.side)}"))
            break
    return objects


def _camera(rng: np.random.Generator, rgb: np.ndarray) -> np.ndarray:
    side = rgb.shape[0]
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    radius = np.hypot(xx - side / 2, yy - side / 2) / np.float32(side / np.sqrt(2))
    focal = np.float32(rng.uniform(1.2, 3.0))
    image = rgb * (np.cos(np.arctan(radius / focal)) ** 4 * np.float32(rng.uniform(0.85, 1.2)))[..., None]
    shift = rng.uniform(0, 1.0)  # lateral chromatic aberration: red and blue planes scaled about the centre
    for channel, sign in ((0, 1), (2, -1)):
        scale = 1 + sign * shift / side
        matrix = np.float32([[scale, 0, (1 - scale) * side / 2], [0, scale, (1 - scale) * side / 2]])
        image[..., channel] = cv2.warpAffine(np.ascontiguousarray(image[..., channel]), matrix, (side, side), borderMode=cv2.BORDER_REFLECT)
    # Photon (shot) noise at a random full well, by its normal approximation: a Poisson draw would consume
    # the random stream by content, and the defect-free render would no longer share the noise.
    full_well, read = np.float32(rng.uniform(150, 3000)), np.float32(rng.uniform(0.001, 0.01))
    exposure = np.clip(image, 0, 1)
    image = exposure + rng.standard_normal(image.shape, dtype=np.float32) * (np.sqrt(exposure / full_well) + read)
    picture = Image.fromarray(np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8))
    if rng.random() < 0.6:
        picture = picture.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0) * side / 256))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=int(rng.integers(45, 96)), subsampling=int(rng.integers(0, 3)))
    return np.array(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def generate_heldout(seed: int, index: int, size: int = 512, max_defects: int = 4, clean_fraction: float = 0.15) -> HeldoutSample:
    """Image ``index`` of held-out set ``seed``; the same with ``max_defects=0`` is the same photograph without defects."""
    if size < 32 or max_defects < 0 or not 0.0 <= clean_fraction <= 1.0:
        raise ValueError(f"size >= 32, max_defects >= 0 and clean_fraction in [0, 1], got {size}, {max_defects}, {clean_fraction}")
    cloth_rng, defect_rng, camera_rng = np.random.default_rng([seed, index, _SEED_KEY]).spawn(3)
    canvas = make_canvas(cloth_rng, size)
    objects = sort_objects(_defects(defect_rng, canvas, max_defects, clean_fraction))
    cloth = f"{_WORDS[canvas.texture]} {canvas.colour_name} cloth"
    if objects:
        caption = f"{cloth} with " + ", ".join(f"a {o.description}" for o in objects) + "."
    else:
        caption = f"clean {cloth} with no defects."
    return HeldoutSample(_camera(camera_rng, canvas.rgb), objects, caption, canvas.texture)

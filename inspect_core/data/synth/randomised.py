"""The ``randomised`` style of synthetic fabric: domain randomisation for a base that generalises.

``generate_sample(..., style="randomised")`` lands here. One image: a layout (``photo``), a
randomised cloth (``random_cloth``), 0-4 defects (``random_defects``; up to 4x more on
wide line-scan strips), the cloth laid out in the frame, camera effects. Three independent random
streams (cloth, defects, photograph) from ``default_rng([seed, index, 1])``, so the same image with
``max_defects=0`` is the identical photograph without its defects, and no image repeats one of the
default style.

Labels are what shows. A defect's pixels are those its patch changed by at least ``VISIBLE_CHANGE``
(0-1, any channel) on the cloth; they go through the same perspective as the cloth and are cut to
where the cloth shows (so nothing is labelled in a line-scan margin or on the background), and the
label box is the box of what remains (``LABEL_COVER`` of a warped pixel). Broken-yarn boxes get the
project's minimum thickness (``LINE_MIN_THICKNESS_FRACTION`` of the shorter frame side), kept inside
the cloth. The default painters label by their drawing strength; here, with faint stains and
low-contrast cloth, strength would label pixels that do not visibly differ.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from inspect_core.data.annotations import Box, DefectObject, sort_objects
from inspect_core.data.synth.cloth import DEFECT_CLASSES, LINE_MIN_THICKNESS_FRACTION, _Patch
from inspect_core.data.synth.defects import _iou, _mask_box, _outline
from inspect_core.data.synth.photo import Layout, compose, draw_layout, finish
from inspect_core.data.synth.random_cloth import RandomCloth, render_cloth
from inspect_core.data.synth.random_defects import PAINTERS
from inspect_core.data.synthetic_fabric import SyntheticSample

STYLE_KEY = 1  # the randomised style's own seed sequence: [seed, index, STYLE_KEY]
VISIBLE_CHANGE = 0.06
MIN_PEAK_CHANGE = 0.1  # a defect must show at least this clearly somewhere, or it is drawn again elsewhere
LABEL_COVER = 0.35
MIN_PIXELS = 4
_MAX_OVERLAP_IOU = 0.1
_PLACEMENT_TRIES = 6
_OUTLINED = frozenset({"hole", "stain", "wrinkle"})


@dataclass(frozen=True)
class _Drawn:
    """A defect drawn on the cloth: its visibly changed pixels in a window at (x0, y0), cloth coordinates."""

    label: str
    phrase: str
    x0: int
    y0: int
    mask: np.ndarray
    box: Box


def _crop(patch: _Patch, height: int, width: int) -> _Patch | None:
    h, w = patch.strength.shape
    top, left = max(0, -patch.y0), max(0, -patch.x0)
    bottom, right = min(h, height - patch.y0), min(w, width - patch.x0)
    if bottom <= top or right <= left:
        return None
    rows, cols = slice(top, bottom), slice(left, right)
    return replace(patch, x0=patch.x0 + left, y0=patch.y0 + top, strength=patch.strength[rows, cols],
                   gain=patch.gain[rows, cols], offset=patch.offset[rows, cols])  # fmt: skip


def _draw(rng: np.random.Generator, cloth: RandomCloth, candidates: np.ndarray, label: str) -> tuple[_Drawn, np.ndarray] | None:
    """One defect of ``label`` at a random placeable pixel: its record and the new cloth window, or None if nothing shows."""
    height, width = cloth.image.shape[:2]
    cy, cx = divmod(int(candidates[rng.integers(candidates.size)]), width)
    patch = _crop(PAINTERS[label](rng, cloth, cx, cy), height, width)
    if patch is None:
        return None
    h, w = patch.strength.shape
    region = cloth.image[patch.y0 : patch.y0 + h, patch.x0 : patch.x0 + w]
    after = region * patch.gain + patch.offset
    change = np.abs(after - region).max(axis=2)
    changed = change >= VISIBLE_CHANGE
    box = _mask_box(changed, patch.x0, patch.y0)
    if box is None or int(changed.sum()) < MIN_PIXELS or float(change.max()) < MIN_PEAK_CHANGE:
        return None
    return _Drawn(label, patch.phrase, patch.x0, patch.y0, changed, box), after


def _add_defects(rng: np.random.Generator, cloth: RandomCloth, layout: Layout, max_defects: int, clean_fraction: float) -> list[_Drawn]:
    height, width = cloth.image.shape[:2]
    clean = rng.random() < clean_fraction
    most = max_defects * min(4, max(1, width // height))
    count = 0 if clean or most == 0 else int(rng.integers(1, most + 1))
    candidates = np.flatnonzero(layout.placeable)
    drawn: list[_Drawn] = []
    if candidates.size == 0:
        return drawn
    for _ in range(count):
        label = DEFECT_CLASSES[rng.integers(len(DEFECT_CLASSES))]
        for _ in range(_PLACEMENT_TRIES):
            result = _draw(rng, cloth, candidates, label)
            if result and all(_iou(result[0].box, other.box) <= _MAX_OVERLAP_IOU for other in drawn):
                defect, after = result
                h, w = defect.mask.shape
                cloth.image[defect.y0 : defect.y0 + h, defect.x0 : defect.x0 + w] = after
                drawn.append(defect)
                break
    return drawn


def _widen(box: Box, lo_x: float, hi_x: float, height: int, thickness: float) -> Box:
    """Give a line's box at least ``thickness`` on each side, centred, kept within columns lo_x..hi_x and the rows."""

    def widen(lo: float, hi: float, start: float, stop: float) -> tuple[float, float]:
        if hi - lo >= thickness:
            return lo, hi
        lo = min(max((lo + hi - thickness) / 2, start), stop - thickness)
        return lo, lo + thickness

    (x1, x2), (y1, y2) = widen(box[0], box[2], lo_x, hi_x), widen(box[1], box[3], 0.0, float(height))
    return (x1, y1, x2, y2)


def _where(box: Box, width: int, height: int) -> str:
    """Where the box centre lies, in an inspector's words (selvages are left and right)."""
    cx, cy = (box[0] + box[2]) / (2 * width), (box[1] + box[3]) / (2 * height)
    horizontal = "left" if cx < 0.2 else "right" if cx > 0.8 else None
    vertical = "top" if cy < 0.2 else "bottom" if cy > 0.8 else None
    if horizontal and vertical:
        return f"in the {vertical}-{horizontal} corner"
    if horizontal or vertical:
        return f"near the {horizontal} selvage" if horizontal else f"near the {vertical} edge"
    return "in the centre" if max(abs(cx - 0.5), abs(cy - 0.5)) < 0.12 else "in the middle"


def _labels(drawn: list[_Drawn], layout: Layout, coverage: np.ndarray) -> list[DefectObject]:
    height, width = coverage.shape
    left, right = layout.margins
    thickness = LINE_MIN_THICKNESS_FRACTION * min(width, height)
    objects = []
    for defect in drawn:
        plane = np.zeros((height, width), np.float32)
        h, w = defect.mask.shape
        plane[defect.y0 : defect.y0 + h, defect.x0 : defect.x0 + w] = defect.mask
        shown = (layout.warp(plane) * coverage) >= LABEL_COVER
        box = _mask_box(shown, 0, 0)
        if box is None:
            continue
        if defect.label == "broken_yarn":
            box = _widen(box, float(left), float(width - right), height, thickness)
        polygon = None
        if defect.label in _OUTLINED:
            closed = np.zeros_like(shown)  # speckled masks (a fold on textured cloth) closed, within the box
            x1, y1, x2, y2 = (int(v) for v in box)
            closed[y1:y2, x1:x2] = cv2.morphologyEx(shown[y1:y2, x1:x2].astype(np.uint8), cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8)) > 0
            polygon = _outline(closed, 0, 0)
        objects.append(DefectObject(defect.label, box, polygon, f"{defect.phrase} {_where(box, width, height)}"))
    return objects


def _caption(cloth: RandomCloth, layout: Layout, objects: tuple[DefectObject, ...]) -> str:
    setting = {"full": "", "background": " lying on a surface", "linescan": " between blank margins"}[layout.name]
    fabric = f"{cloth.words} {cloth.colour_name} fabric{setting}"
    if not objects:
        return f"clean {fabric} with no defects."
    phrases = [f"a {obj.description}" for obj in objects]
    listed = phrases[0] if len(phrases) == 1 else f"{', '.join(phrases[:-1])} and {phrases[-1]}"
    return f"{fabric} with {listed}."


def generate_randomised(
    seed: int, index: int, size: int, max_defects: int, clean_fraction: float, width: int | None = None
) -> SyntheticSample:
    """Image ``index`` of the randomised set ``seed``: ``size`` px high, ``width`` (default ``size``) wide."""
    width = width or size
    cloth_rng, defect_rng, photo_rng = np.random.default_rng([seed, index, STYLE_KEY]).spawn(3)
    layout = draw_layout(photo_rng, size, width)
    cloth = render_cloth(cloth_rng, size, width)
    drawn = _add_defects(defect_rng, cloth, layout, max_defects, clean_fraction)
    frame, coverage = compose(photo_rng, layout, cloth.image)
    objects = sort_objects(_labels(drawn, layout, coverage))
    image = finish(photo_rng, frame, layout)
    return SyntheticSample(image, objects, _caption(cloth, layout, objects), cloth.structure, layout.name, layout.margins)

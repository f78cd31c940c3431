"""Synthetic defects for ``synthetic_fabric``: painters for each class, exact labels, placement and captions.

Split from ``synthetic_fabric`` unchanged (same random draws, same pixels); see that module for the design.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import cv2
import numpy as np

from inspect_core.data.annotations import Box, DefectObject, Polygon, sort_objects
from inspect_core.data.synth.cloth import (
    _LUMA,
    _MASK_THRESHOLD,
    _MAX_OVERLAP_IOU,
    _OIL_MIN_LUMINANCE,
    _PLACEMENT_TRIES,
    _TEXTURE_WORDS,
    DEFECT_CLASSES,
    LINE_MIN_THICKNESS_FRACTION,
    _blend,
    _blob_size,
    _centre,
    _Fabric,
    _gap,
    _grid,
    _Patch,
    _shade,
    _stack,
    _yarn_ends,
)


def _paint_hole(rng: np.random.Generator, fabric: _Fabric) -> _Patch:
    """Irregular opening; yarn ends stick into it by random lengths, and a fuzzy rim of torn fibres."""
    s = fabric.scale
    radius = max(rng.uniform(5, 36) * s, 2.0)
    half = int(np.ceil(radius * 1.6 + 4 * s + 2))
    cx, cy = _centre(rng, fabric.side, 0.05)
    yy, xx = _grid(half, half)
    theta, dist = np.arctan2(yy, xx), np.hypot(yy, xx)
    outline = np.ones_like(theta)
    for k in range(2, 6):
        wobble = np.float32(rng.uniform(0, 0.6) / k)
        outline += wobble * np.cos(k * theta + np.float32(rng.uniform(0, 2 * np.pi)))
    # Frayed edge: each cut warp (column) and weft (row) yarn sticks into the hole by its own length.
    fray = max(0.4 * radius, 2.0)
    warp_ends = _yarn_ends(rng, xx + cx, fabric.period, fray)
    weft_ends = _yarn_ends(rng, yy + cy, fabric.period, fray)
    edge = radius * outline - warp_ends * np.abs(np.sin(theta)) - weft_ends * np.abs(np.cos(theta))
    inside = cv2.GaussianBlur((dist < edge).astype(np.float32), (3, 3), 0)
    rim_width = max(3 * s, 1.5)
    rim = np.clip(1 - (dist - edge) / np.float32(rim_width), 0, 1) * (1 - inside)
    gap, tone = _gap(fabric)
    rim_gain = 1 + np.float32(-0.4 if fabric.is_dark else 0.4) * rim[..., None]
    gain, offset = _stack(_shade(rim_gain), _blend(inside, gap))
    phrase = f"{_blob_size(2 * radius, fabric.side)} {tone} hole"
    return _Patch(cx - half, cy - half, np.maximum(inside, rim), gain, offset, phrase)


def _paint_stain(rng: np.random.Generator, fabric: _Fabric) -> _Patch:
    """Soft irregular blob: dark oil that soaks the yarns, or a pale water mark with a tide line."""
    s = fabric.scale
    radius = rng.uniform(12, 64) * s
    half = int(np.ceil(radius * 2.2))
    cx, cy = _centre(rng, fabric.side, 0.05)
    yy, xx = _grid(half, half)
    field = np.zeros((2 * half + 1, 2 * half + 1), np.float32)
    for _ in range(rng.integers(3, 7)):
        bx, by = rng.normal(0, 0.45 * radius, 2)
        blob_radius = np.float32(rng.uniform(0.35, 0.7) * radius)
        field += np.exp(-((xx - np.float32(bx)) ** 2 + (yy - np.float32(by)) ** 2) / (2 * blob_radius**2))
    coverage = np.clip((field - np.float32(0.6)) / np.float32(0.35), 0, 1)
    alpha = coverage * np.float32(rng.uniform(0.65, 0.9))
    oily = float(fabric.mean_rgb @ _LUMA) > _OIL_MIN_LUMINANCE
    if oily:
        tint = np.array([(0.30, 0.24, 0.16), (0.28, 0.28, 0.29)][rng.integers(2)], np.float32)
        gain, offset = _shade(1 - alpha[..., None] * (1 - tint))
    else:
        tide = 4 * coverage * (1 - coverage)  # a darker ring where the water dried: the mark's edge
        gain, offset = _stack(
            _blend(alpha * np.float32(0.7), np.array([0.86, 0.84, 0.79], np.float32)),
            _shade(1 - np.float32(0.35) * tide[..., None]),
        )
    phrase = f"{_blob_size(2 * radius, fabric.side)} {'oily' if oily else 'pale'} stain"
    return _Patch(cx - half, cy - half, alpha, gain, offset, phrase)


def _paint_broken_yarn(rng: np.random.Generator, fabric: _Fabric) -> _Patch:
    """A missing yarn: a thin gap along one yarn, sometimes ending in a tuft of loose fibre."""
    s, side = fabric.scale, fabric.side
    along_warp = rng.random() < 0.5
    length = int(rng.uniform(0.2, 0.7) * side)
    width = max(1, round(int(rng.integers(1, 4)) * s))
    tuft_radius = max(rng.uniform(2, 4) * s, 1.5)
    margin = int(np.ceil(tuft_radius * 2)) + 1
    # Built as a vertical line in a (length + 2 margin) x (width + 2 margin) window, transposed for weft.
    across = int(rng.integers(0, side - width + 1))
    start = int(rng.integers(0, side - length + 1))
    rows = np.arange(-margin, length + margin, dtype=np.float32)[:, None]
    cols = np.arange(-margin, width + margin, dtype=np.float32)[None, :]
    taper = np.clip(np.minimum(rows + 1, length - rows) / np.float32(max(3 * s, 1)), 0, 1)
    soft_edge = np.clip(1 - np.maximum(-cols, cols - (width - 1)) * np.float32(0.6), 0, 1)
    line = np.float32(0.9) * taper * soft_edge
    gap, _ = _gap(fabric)
    layers = _blend(line, gap)
    has_tuft = rng.random() < 0.5
    if has_tuft:
        end = length - 1 if rng.random() < 0.5 else 0
        tuft = np.zeros_like(line)
        for _ in range(3):
            dy, dx = rng.normal(0, tuft_radius * 0.4, 2)
            d = np.hypot(rows - np.float32(end + dy), cols - np.float32((width - 1) / 2 + dx))
            tuft = np.maximum(tuft, np.clip(np.float32(tuft_radius * 0.7) - d + 1, 0, 1))
        fluff = fabric.yarn_rgb * 0.45 if fabric.is_dark else np.clip(fabric.yarn_rgb * 1.35 + 0.1, 0, 1)
        layers = _stack(layers, _blend(tuft * np.float32(0.9), fluff))
        line = np.maximum(line, tuft)
    gain, offset = layers
    x0, y0 = across - margin, start - margin
    if not along_warp:
        line, gain, offset = line.T, gain.transpose(1, 0, 2), offset.transpose(1, 0, 2)
        x0, y0 = y0, x0
    size_word, tone = "long" if length >= 0.4 * side else "short", "frayed " if has_tuft else ""
    phrase = f"{size_word} {tone}broken yarn along the {'warp' if along_warp else 'weft'}"
    return _Patch(x0, y0, line, gain, offset, phrase)


def _orientation(degrees: float) -> str:
    """Word for a direction given in degrees from horizontal (0-180)."""
    if min(degrees, 180 - degrees) < 22.5:
        return "horizontal"
    return "vertical" if abs(degrees - 90) < 22.5 else "diagonal"


def _paint_wrinkle(rng: np.random.Generator, fabric: _Fabric) -> _Patch:
    """A long gently curved fold: a light band on the lit side of its crest, a shadow band on the other."""
    s, side = fabric.scale, fabric.side
    length = rng.uniform(0.4, 0.9) * side
    angle = rng.uniform(0, np.pi)
    sigma = np.float32(rng.uniform(5, 12) * s)
    sag = np.float32(rng.uniform(-0.12, 0.12) * length)
    cos, sin = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    reach = abs(float(sag)) + 4 * float(sigma)
    half_w = int(np.ceil(abs(cos) * length / 2 + abs(sin) * reach))
    half_h = int(np.ceil(abs(sin) * length / 2 + abs(cos) * reach))
    cx, cy = _centre(rng, side, 0.25)
    yy, xx = _grid(half_w, half_h)
    t = (xx * cos + yy * sin) / np.float32(length / 2)  # -1..1 along the fold
    envelope = np.sqrt(np.clip(1 - t * t, 0, 1))
    d = (yy * cos - xx * sin) - sag * (1 - t * t)  # signed distance from the curved crest
    light = np.exp(-((d - sigma) ** 2) / (2 * sigma**2))
    shadow = np.exp(-((d + sigma) ** 2) / (2 * sigma**2))
    relief = envelope * (light - shadow)
    gain = 1 + np.float32(rng.uniform(0.45, 0.65)) * relief[..., None]
    # Sheen on the lit band, so folds show on dark cloth too.
    offset = np.float32(0.2) * np.maximum(relief, 0)[..., None]
    size_word, tone = "long" if length >= 0.6 * side else "short", "sharp" if sigma < 8 * s else "soft"
    phrase = f"{size_word} {tone} {_orientation(float(np.degrees(angle)))} wrinkle"
    return _Patch(cx - half_w, cy - half_h, envelope * np.maximum(light, shadow), gain, offset, phrase)


def _paint_knot(rng: np.random.Generator, fabric: _Fabric) -> _Patch:
    """A small raised lump of yarn in another shade, lit from the upper left, casting a shadow."""
    s = fabric.scale
    a = max(rng.uniform(5, 11) * s, 2.0)
    b = a * rng.uniform(0.6, 1.0)
    angle = rng.uniform(0, np.pi)
    half = int(np.ceil(a * 1.8 + 2))
    cx, cy = _centre(rng, fabric.side, 0.05)
    yy, xx = _grid(half, half)
    cos, sin = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    radial = np.hypot((xx * cos + yy * sin) / np.float32(a), (yy * cos - xx * sin) / np.float32(b))
    height = np.float32(a) * np.sqrt(np.clip(1 - radial**2, 0, 1))  # a dome as high as it is wide
    slope_y, slope_x = np.gradient(height)
    sun = np.array([-0.55, -0.55, 0.63], np.float32)  # towards the light: upper left, above the cloth
    facing = -slope_x * sun[0] - slope_y * sun[1] + sun[2]
    lambert = np.clip(facing / np.sqrt(slope_x**2 + slope_y**2 + 1), 0, 1)
    lump = np.clip(1 - (radial - 1) * np.float32(a), 0, 1)
    # Lighter or darker than the cloth; on dark cloth a darker lump would not show, so always lighter.
    light = fabric.is_dark or rng.random() < 0.5
    if light:
        base = fabric.mean_rgb + (1 - fabric.mean_rgb) * np.float32(rng.uniform(0.3, 0.5))
    else:
        base = fabric.mean_rgb * np.float32(rng.uniform(0.45, 0.6))
    colour = np.clip(base * rng.normal(1.0, 0.06, 3).astype(np.float32), 0, 1)
    surface = colour * (0.35 + 0.9 * lambert)[..., None] + (0.25 * lambert**4)[..., None]
    drop = max(0.35 * a, 1.0)  # the cast shadow falls to the lower right
    shadow = cv2.warpAffine(lump, np.float32([[1, 0, drop], [0, 1, drop]]), lump.shape[::-1]) * (1 - lump)
    gain, offset = _stack(_shade(1 - np.float32(0.55) * shadow[..., None]), _blend(lump, surface))
    tone = "light" if light else "dark"
    return _Patch(cx - half, cy - half, np.maximum(lump, shadow), gain, offset, f"small {tone} knot")


_PAINTERS: dict[str, Callable[[np.random.Generator, _Fabric], _Patch]] = {
    "hole": _paint_hole,
    "stain": _paint_stain,
    "broken_yarn": _paint_broken_yarn,
    "wrinkle": _paint_wrinkle,
    "knot": _paint_knot,
}
_OUTLINED = frozenset({"hole", "stain", "wrinkle"})
_LINES = frozenset({"broken_yarn"})


# ---------------------------------------------------------------------------------------------
# Labels


def _crop(patch: _Patch, side: int) -> _Patch | None:
    """The part of the patch inside the image, or None where none is."""
    h, w = patch.strength.shape
    top, left = max(0, -patch.y0), max(0, -patch.x0)
    bottom, right = min(h, side - patch.y0), min(w, side - patch.x0)
    if bottom <= top or right <= left:
        return None
    rows, cols = slice(top, bottom), slice(left, right)
    return replace(
        patch,
        x0=patch.x0 + left,
        y0=patch.y0 + top,
        strength=patch.strength[rows, cols],
        gain=patch.gain[rows, cols],
        offset=patch.offset[rows, cols],
    )


def _mask_box(mask: np.ndarray, x0: int, y0: int) -> Box | None:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return (float(x0 + cols[0]), float(y0 + rows[0]), float(x0 + cols[-1] + 1), float(y0 + rows[-1] + 1))


def _widen_line_box(box: Box, side: int) -> Box:
    """Give each side of the box at least the minimum line thickness, centred, kept inside the image."""
    thickness = LINE_MIN_THICKNESS_FRACTION * side

    def widen(lo: float, hi: float) -> tuple[float, float]:
        if hi - lo >= thickness:
            return lo, hi
        lo = min(max((lo + hi - thickness) / 2, 0.0), side - thickness)
        return lo, lo + thickness

    (x1, x2), (y1, y2) = widen(box[0], box[2]), widen(box[1], box[3])
    return (x1, y1, x2, y2)


def _outline(mask: np.ndarray, x0: int, y0: int) -> Polygon | None:
    """Simplified outline of the mask's largest part, through the centres of its edge pixels."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    contour = max(contours, key=cv2.contourArea)
    approx = cv2.approxPolyDP(contour, max(0.75, 0.01 * cv2.arcLength(contour, True)), True).reshape(-1, 2)
    if len(approx) < 3:
        return None
    return tuple((float(px) + x0 + 0.5, float(py) + y0 + 0.5) for px, py in approx)


def _position(box: Box, side: int) -> str:
    """Where on the cloth the box centre lies, in an inspector's words (selvages are left and right)."""
    cx, cy = (box[0] + box[2]) / (2 * side), (box[1] + box[3]) / (2 * side)
    horizontal = "left" if cx < 0.2 else "right" if cx > 0.8 else None
    vertical = "top" if cy < 0.2 else "bottom" if cy > 0.8 else None
    if horizontal and vertical:
        return f"in the {vertical}-{horizontal} corner"
    if horizontal:
        return f"near the {horizontal} selvage"
    if vertical:
        return f"near the {vertical} edge"
    dx, dy = cx - 0.5, cy - 0.5
    if max(abs(dx), abs(dy)) < 0.12:
        return "in the centre"
    if abs(dy) >= abs(dx):
        return "in the upper half" if dy < 0 else "in the lower half"
    return "on the left side" if dx < 0 else "on the right side"


def _label(label: str, patch: _Patch, side: int) -> DefectObject | None:
    """The defect's exact annotation, or None where none of it shows."""
    mask = patch.strength > _MASK_THRESHOLD
    box = _mask_box(mask, patch.x0, patch.y0)
    if box is None:
        return None
    if label in _LINES:
        box = _widen_line_box(box, side)
    polygon = _outline(mask, patch.x0, patch.y0) if label in _OUTLINED else None
    return DefectObject(label, box, polygon, f"{patch.phrase} {_position(box, side)}")


def _iou(a: Box, b: Box) -> float:
    inter_w = min(a[2], b[2]) - max(a[0], b[0])
    inter_h = min(a[3], b[3]) - max(a[1], b[1])
    if inter_w <= 0 or inter_h <= 0:
        return 0.0
    inter = inter_w * inter_h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _apply(image: np.ndarray, patch: _Patch) -> None:
    h, w = patch.strength.shape
    region = image[patch.y0 : patch.y0 + h, patch.x0 : patch.x0 + w]
    region *= patch.gain
    region += patch.offset


def _add_defects(rng: np.random.Generator, fabric: _Fabric, max_defects: int, clean_fraction: float) -> tuple[DefectObject, ...]:
    """Draw 0..max_defects defects onto the fabric, skipping placements that overlap earlier ones."""
    clean = rng.random() < clean_fraction
    count = 0 if clean or max_defects == 0 else int(rng.integers(1, max_defects + 1))
    placed: list[DefectObject] = []
    for _ in range(count):
        label = DEFECT_CLASSES[rng.integers(len(DEFECT_CLASSES))]
        for _ in range(_PLACEMENT_TRIES):
            patch = _crop(_PAINTERS[label](rng, fabric), fabric.side)
            obj = _label(label, patch, fabric.side) if patch else None
            if obj and all(_iou(obj.box, other.box) <= _MAX_OVERLAP_IOU for other in placed):
                _apply(fabric.image, patch)
                placed.append(obj)
                break
    return sort_objects(placed)


def _caption(fabric: _Fabric, objects: tuple[DefectObject, ...]) -> str:
    cloth = f"{_TEXTURE_WORDS[fabric.texture]} {fabric.colour_name} fabric"
    if not objects:
        return f"clean {cloth} with no defects."
    phrases = [f"a {obj.description}" for obj in objects]
    listed = phrases[0] if len(phrases) == 1 else f"{', '.join(phrases[:-1])} and {phrases[-1]}"
    return f"{cloth} with {listed}."


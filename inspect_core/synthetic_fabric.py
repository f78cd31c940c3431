"""Synthetic fabric images with labelled defects, for sample data, tests and detector pretraining.

Each image is a woven (``plain``, ``twill``) or knitted (``knit``) texture in a random textile colour
and yarn size, with 0-4 defects drawn on it (``hole``, ``stain``, ``broken_yarn``, ``wrinkle``,
``knot``), then a random lighting gradient, gaussian sensor noise and JPEG compression (encoded and
decoded), like a real line-scan capture. A detector must learn to find these defects, so they are
drawn with clear contrast, and every label is exact: a box is the tight bounding box of the pixels
where the drawn defect shows (strength above ``_MASK_THRESHOLD``), in continuous coordinates (``x2``
is the last pixel index + 1). Holes, stains and wrinkles also get a polygon: the simplified outline of
those pixels, through their centres (index + 0.5).

``LINE_MIN_THICKNESS_FRACTION``: a broken yarn is a 1-3 px line, whose tight box is nearly
zero-thickness and fails any IoU match after a pixel of error. Its box's short side is therefore
widened to at least this fraction of the image side (about 8 px at 256 px), centred on the line and
shifted back inside the image where the line runs along an edge.

Generation is deterministic: image ``index`` of ``seed`` draws from ``np.random.default_rng([seed,
index])`` only, split into independent streams for the fabric, the defects and the finishing, so the
same image rendered with ``max_defects=0`` is the identical fabric without its defects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from lxml import etree

from inspect_core.annotations import Box, DefectObject, Polygon, sort_objects

DEFECT_CLASSES: tuple[str, ...] = ("hole", "stain", "broken_yarn", "wrinkle", "knot")
LINE_MIN_THICKNESS_FRACTION: float = 0.03

_TEXTURE_WORDS = {"plain": "plain woven", "twill": "twill woven", "knit": "knitted"}
_TEXTURES = tuple(_TEXTURE_WORDS)

# Yarn and defect sizes below are in pixels at this image side and scale with the requested size.
_REFERENCE_SIDE = 512
# A pixel belongs to a defect (box, polygon) where the defect shows with at least this strength (0-1).
_MASK_THRESHOLD = 0.1
_MAX_OVERLAP_IOU = 0.1
_PLACEMENT_TRIES = 5
_JPEG_QUALITY_RANGE = (80, 95)
_VOC_JPEG_QUALITY = 90
# Below this fabric luminance a dark hole would hardly show: openings show the lit table instead.
_DARK_FABRIC_LUMINANCE = 0.3
# Oil darkens cloth lighter than this clearly; darker cloth shows a pale water mark instead.
_OIL_MIN_LUMINANCE = 0.45
_DARK_GAP = np.array([0.03, 0.03, 0.035], np.float32)
_LIT_GAP = np.array([0.88, 0.87, 0.84], np.float32)
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)

# name, warp colour, weft colour (0-1 RGB); weft differs only where real cloth does (denim).
_PALETTE: tuple[tuple[str, tuple[float, float, float], tuple[float, float, float]], ...] = (
    ("white", (0.95, 0.94, 0.91), (0.95, 0.94, 0.91)),
    ("cream", (0.96, 0.91, 0.79), (0.96, 0.91, 0.79)),
    ("beige", (0.84, 0.75, 0.60), (0.84, 0.75, 0.60)),
    ("khaki", (0.72, 0.66, 0.46), (0.72, 0.66, 0.46)),
    ("light grey", (0.76, 0.76, 0.74), (0.76, 0.76, 0.74)),
    ("grey", (0.52, 0.52, 0.52), (0.52, 0.52, 0.52)),
    ("charcoal", (0.30, 0.30, 0.32), (0.30, 0.30, 0.32)),
    ("denim blue", (0.17, 0.27, 0.48), (0.82, 0.82, 0.78)),
    ("navy", (0.14, 0.18, 0.36), (0.14, 0.18, 0.36)),
    ("sky blue", (0.56, 0.71, 0.87), (0.56, 0.71, 0.87)),
    ("dark green", (0.14, 0.32, 0.19), (0.14, 0.32, 0.19)),
    ("olive", (0.45, 0.45, 0.24), (0.45, 0.45, 0.24)),
    ("red", (0.74, 0.13, 0.13), (0.74, 0.13, 0.13)),
    ("burgundy", (0.47, 0.11, 0.16), (0.47, 0.11, 0.16)),
)


@dataclass(frozen=True)
class SyntheticSample:
    """One generated image with its labels, ready to write in any supported format."""

    image: np.ndarray  # HxWx3 uint8 RGB, already JPEG-degraded
    objects: tuple[DefectObject, ...]
    caption: str
    texture: str  # plain | twill | knit


@dataclass(frozen=True)
class _Fabric:
    """The clean cloth the defects are drawn on, with what the defect painters need to know of it."""

    texture: str
    colour_name: str
    image: np.ndarray  # HxWx3 float32 RGB 0-1, painted in place
    period: float  # yarn spacing in pixels
    yarn_rgb: np.ndarray  # warp colour, the colour of loose fibre
    mean_rgb: np.ndarray

    @property
    def side(self) -> int:
        return self.image.shape[0]

    @property
    def scale(self) -> float:
        return self.side / _REFERENCE_SIDE

    @property
    def is_dark(self) -> bool:
        return float(self.mean_rgb @ _LUMA) < _DARK_FABRIC_LUMINANCE


@dataclass(frozen=True)
class _Patch:
    """A defect in a window at (x0, y0): the cloth there becomes ``cloth * gain + offset``.

    ``strength`` (0-1) is how much of the defect each pixel shows; it defines the label's pixels.
    ``phrase`` describes the defect without its position, e.g. "small dark hole".
    """

    x0: int
    y0: int
    strength: np.ndarray  # h x w
    gain: np.ndarray  # h x w x (1 | 3)
    offset: np.ndarray  # h x w x (1 | 3)
    phrase: str


# ---------------------------------------------------------------------------------------------
# Fabric


def _yarn_profile(frac: np.ndarray) -> np.ndarray:
    """Brightness across one yarn: lit crown in the middle, dark gaps between neighbours."""
    return np.sin(np.pi * frac) ** 0.6


def _yarn_jitter(rng: np.random.Generator, index: np.ndarray) -> np.ndarray:
    """Per-yarn brightness variation (uneven dye uptake and twist), looked up by yarn index."""
    return rng.normal(1.0, 0.05, int(index.max()) + 1).astype(np.float32)[index]


def _woven(rng: np.random.Generator, texture: str, side: int, period: float) -> tuple[np.ndarray, np.ndarray]:
    """Luminance and warp-on-top mask of a plain or twill weave (warp vertical, weft horizontal)."""
    coords = np.arange(side, dtype=np.float32)
    u = (coords + np.float32(rng.uniform(0, period))) / np.float32(period)
    v = (coords + np.float32(rng.uniform(0, period))) / np.float32(period)
    i, j = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
    fx, fy = u - i, v - j
    # Where a yarn floats on top it is brightest at its crown, between two crossings.
    crest_x, crest_y = 0.8 + 0.2 * np.sin(np.pi * fx), 0.8 + 0.2 * np.sin(np.pi * fy)
    warp = (_yarn_profile(fx) * _yarn_jitter(rng, i))[None, :] * crest_y[:, None]
    weft = (_yarn_profile(fy) * _yarn_jitter(rng, j))[:, None] * crest_x[None, :]
    if texture == "plain":
        warp_on_top = (i[None, :] + j[:, None]) % 2 == 0
    else:  # 2/1, 2/2 or 3/1 twill, left- or right-hand
        repeat, floats = [(3, 2), (4, 2), (4, 3)][rng.integers(3)]
        direction = 1 if rng.random() < 0.5 else -1
        warp_on_top = (i[None, :] + direction * j[:, None]) % repeat < floats
    return np.where(warp_on_top, warp, weft), warp_on_top


def _knit(rng: np.random.Generator, side: int, period: float) -> np.ndarray:
    """Luminance of a jersey knit: columns (wales) of V-shaped loops stacked in rows (courses)."""
    coords = np.arange(side, dtype=np.float32)
    wale_width, course_height = np.float32(period * 1.1), np.float32(period * 0.75)
    u = (coords + np.float32(rng.uniform(0, wale_width))) / wale_width
    wale = np.floor(u).astype(np.int64)
    across = np.abs(u - wale - np.float32(0.5))  # 0 at the wale centre, 0.5 at its edges
    legs = np.sin(np.pi * 2 * across) ** 0.5 * _yarn_jitter(rng, wale)
    # Lines of equal `rows` are V shapes: each loop's two legs slant down towards the wale centre.
    rows = (coords[:, None] + np.float32(rng.uniform(0, course_height))) / course_height
    rows = rows + np.float32(rng.uniform(1.0, 1.4)) * across[None, :]
    return np.sin(np.pi * (rows % 1)) ** 0.7 * legs[None, :]


def _weave_fabric(rng: np.random.Generator, side: int) -> _Fabric:
    """A random clean cloth: texture, colour, yarn size."""
    texture = _TEXTURES[rng.integers(len(_TEXTURES))]
    name, warp_rgb, weft_rgb = _PALETTE[rng.integers(len(_PALETTE))]
    shade = rng.uniform(0.92, 1.06, 3).astype(np.float32)  # dye lot variation
    warp_rgb = np.clip(np.asarray(warp_rgb, np.float32) * shade, 0, 1)
    weft_rgb = np.clip(np.asarray(weft_rgb, np.float32) * shade, 0, 1)
    period = max(rng.uniform(4, 12) * side / _REFERENCE_SIDE, 3.0)
    if texture == "knit":
        luminance = _knit(rng, side, period)
        yarn_colour = warp_rgb
    else:
        luminance, warp_on_top = _woven(rng, texture, side, period)
        yarn_colour = np.where(warp_on_top[..., None], warp_rgb, weft_rgb)
    image = yarn_colour * (0.45 + 0.55 * luminance)[..., None]
    # A sparse sample gives the mean colour well enough for contrast choices, at 1/16 of the cost.
    return _Fabric(texture, name, image, period, warp_rgb, image[::4, ::4].mean(axis=(0, 1)))


def _finish(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Camera effects: lighting gradient, sensor noise, 8-bit quantisation and JPEG compression."""
    side = image.shape[0]
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.arange(side, dtype=np.float32) / np.float32(side) - np.float32(0.5)
    light = 1 + np.float32(rng.uniform(0.1, 0.35)) * (np.float32(np.cos(angle)) * ramp[None, :] + np.float32(np.sin(angle)) * ramp[:, None])
    noisy = rng.standard_normal(image.shape, dtype=np.float32)
    noisy *= np.float32(rng.uniform(0.008, 0.03))
    noisy += image * light[..., None]
    noisy *= 255
    noisy += 0.5
    pixels = np.clip(noisy, 0, 255, out=noisy).astype(np.uint8)
    quality = int(rng.integers(_JPEG_QUALITY_RANGE[0], _JPEG_QUALITY_RANGE[1] + 1))
    decoded = cv2.imdecode(np.frombuffer(_encode_jpeg(pixels, quality), np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def _encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    ok, buffer = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV failed to encode a JPEG")
    return buffer.tobytes()


# ---------------------------------------------------------------------------------------------
# Defect painters: each draws one random defect of its class into a window, without touching the cloth.


def _grid(half_w: int, half_h: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel offsets from a window's centre, shapes (2*half_h+1, 1) and (1, 2*half_w+1)."""
    return (
        np.arange(-half_h, half_h + 1, dtype=np.float32)[:, None],
        np.arange(-half_w, half_w + 1, dtype=np.float32)[None, :],
    )


def _blend(alpha: np.ndarray, colour: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gain and offset that cover the cloth with ``colour`` at opacity ``alpha``."""
    a = alpha[..., None]
    return 1 - a, a * colour


def _shade(gain: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gain and offset that only lighten or darken the cloth, keeping its texture."""
    return gain, np.zeros((*gain.shape[:2], 1), np.float32)


def _stack(lower: tuple[np.ndarray, np.ndarray], upper: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Gain and offset of applying ``lower`` then ``upper``."""
    return lower[0] * upper[0], lower[1] * upper[0] + upper[1]


def _blob_size(diameter: float, side: int) -> str:
    fraction = diameter / side
    return "small" if fraction < 0.05 else "medium" if fraction < 0.12 else "large"


def _gap(fabric: _Fabric) -> tuple[np.ndarray, str]:
    """What shows through an opening in the cloth, chosen to contrast with it, and its tone word."""
    return (_LIT_GAP, "bright") if fabric.is_dark else (_DARK_GAP, "dark")


def _centre(rng: np.random.Generator, side: int, margin: float) -> tuple[int, int]:
    """A random pixel at least ``margin`` (fraction of the side) from the image edges."""
    cx, cy = rng.uniform(margin * side, (1 - margin) * side, 2)
    return int(cx), int(cy)


def _yarn_ends(rng: np.random.Generator, coord: np.ndarray, period: float, reach: float) -> np.ndarray:
    """How far each cut yarn's end reaches, over the thin core of the yarn at ``coord`` (0 between)."""
    yarn = coord / np.float32(period)
    index = np.floor(yarn).astype(np.int64)
    lengths = rng.uniform(0, reach, int(index.max() - index.min()) + 1).astype(np.float32)
    return lengths[index - index.min()] * (np.abs(yarn - index - np.float32(0.5)) < 0.25)


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


def generate_sample(seed: int, index: int, size: int = 512, max_defects: int = 4, clean_fraction: float = 0.15) -> SyntheticSample:
    """Image ``index`` of the synthetic set ``seed``: same arguments, same pixels and labels.

    ``size`` is the square image side. The sample with ``max_defects=0`` is the same cloth, lighting
    and noise without defects, which is how tests measure what a defect changed.
    """
    if size < 32:
        raise ValueError(f"size must be at least 32 px, got {size}")
    if max_defects < 0 or not 0.0 <= clean_fraction <= 1.0:
        raise ValueError("max_defects must be >= 0 and clean_fraction within [0, 1]")
    fabric_rng, defect_rng, finish_rng = np.random.default_rng([seed, index]).spawn(3)
    fabric = _weave_fabric(fabric_rng, size)
    objects = _add_defects(defect_rng, fabric, max_defects, clean_fraction)
    image = _finish(finish_rng, fabric.image)
    return SyntheticSample(image, objects, _caption(fabric, objects), fabric.texture)


# ---------------------------------------------------------------------------------------------
# Pascal VOC


def _voc_span(lo: float, hi: float, limit: int) -> tuple[int, int]:
    """Integer VOC bounds, rounded from continuous ones, at least one pixel wide, inside the image."""
    a, b = int(round(lo)), int(round(hi))
    if b > a:
        return a, b
    return (a, a + 1) if a < limit else (limit - 1, limit)


def _sub(parent: etree._Element, tag: str, text: str | int) -> etree._Element:
    element = etree.SubElement(parent, tag)
    element.text = str(text)
    return element


def _voc_xml(sample: SyntheticSample, folder: str, filename: str) -> bytes:
    """LabelImg's Pascal VOC layout, plus ``<caption>`` and per-object ``<description>`` it ignores."""
    height, width = sample.image.shape[:2]
    root = etree.Element("annotation")
    _sub(root, "folder", folder)
    _sub(root, "filename", filename)
    _sub(root, "path", filename)
    _sub(etree.SubElement(root, "source"), "database", "inspect-core synthetic")
    size = etree.SubElement(root, "size")
    _sub(size, "width", width)
    _sub(size, "height", height)
    _sub(size, "depth", 3)
    _sub(root, "segmented", 0)
    _sub(root, "caption", sample.caption)
    for obj in sample.objects:
        xmin, xmax = _voc_span(obj.box[0], obj.box[2], width)
        ymin, ymax = _voc_span(obj.box[1], obj.box[3], height)
        element = etree.SubElement(root, "object")
        _sub(element, "name", obj.label)
        _sub(element, "pose", "Unspecified")
        # As LabelImg does: a box touching the image border is marked truncated.
        _sub(element, "truncated", int(xmin == 0 or ymin == 0 or xmax == width or ymax == height))
        _sub(element, "difficult", 0)
        _sub(element, "description", obj.phrase)
        bndbox = etree.SubElement(element, "bndbox")
        for tag, value in (("xmin", xmin), ("ymin", ymin), ("xmax", xmax), ("ymax", ymax)):
            _sub(bndbox, tag, value)
    etree.indent(root, space="\t")
    return etree.tostring(root, pretty_print=True, encoding="utf-8")


def write_voc_dataset(out_dir: Path, count: int, seed: int = 0, size: int = 512, start_index: int = 0) -> list[Path]:
    """Write `count` images (`fabric_{index:05d}.jpg`) + LabelImg Pascal VOC XML (`fabric_{index:05d}.xml`)
    side by side in out_dir; returns the xml paths.

    The format LabelImg reads lets people inspect and correct the synthetic labels by hand.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    xml_paths = []
    for index in range(start_index, start_index + count):
        sample = generate_sample(seed, index, size)
        image_name = f"fabric_{index:05d}.jpg"
        (out_dir / image_name).write_bytes(_encode_jpeg(sample.image, _VOC_JPEG_QUALITY))
        xml_path = out_dir / f"fabric_{index:05d}.xml"
        xml_path.write_bytes(_voc_xml(sample, out_dir.name, image_name))
        xml_paths.append(xml_path)
    return xml_paths

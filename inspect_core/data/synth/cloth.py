"""Synthetic cloth for ``synthetic_fabric``: textile palette, woven and knitted textures, lighting and finishing.

Split from ``synthetic_fabric`` unchanged (same random draws, same pixels); see that module for the design.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

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



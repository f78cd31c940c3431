"""Randomised cloth for the ``randomised`` style of ``synthetic_fabric``: many structures, scales and uneven yarns.

Why: the shipped base learned the default generator's cloth as much as its defects. On an independent
generator it scored broken yarn AP@50 0.035 (issue 15), calling yarn lines wrinkles: with three textures
at one scale range, "a line that differs from this exact weave" was enough to detect a defect. Domain
randomisation widens what cloth looks like, so the one thing that stays constant is the defect.

- Structures: woven plain, twill (2/1, 3/1, 2/2, 3/2 ... either hand), satin (5- and 8-end, warp- or
  weft-faced), 2x2 basket, herringbone and warp rib, all from one repeat-matrix renderer; knitted
  jersey, rib (1x1 to 2x3) and purl.
- Scale: yarn period log-uniform 2.5-22 px at 512 px (the default style: 4-12), never under 2.2 px.
- Yarn irregularity: every yarn has its own width (coefficient of variation up to 18 %), its own shade,
  a wavy path (smooth displacement up to a third of a period), and uneven thickness along its length.
- Colour: any hue, mostly neutrals as in real mills; solid, denim (dark warp, light weft), yarn-dyed
  stripes and checks, melange (two fibres mixed).
- Orientation: the cloth is turned within +-12 degrees, or to any angle in 15 % of images.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import cv2
import numpy as np

REFERENCE_SIDE = 512
WOVEN = ("plain", "twill", "satin", "basket", "herringbone", "warp rib")
KNITTED = ("jersey", "rib", "purl")
_WORDS = {name: f"{name} woven" for name in WOVEN} | {"jersey": "jersey knitted", "rib": "rib knitted", "purl": "purl knitted"}
_MIN_PERIOD_PX = 2.2
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass(frozen=True)
class RandomCloth:
    """A clean randomised cloth and what the defect painters need to know of it."""

    structure: str
    colour_name: str
    image: np.ndarray  # H x W x 3 float32 RGB 0-1, painted in place
    period: float  # yarn spacing in pixels
    angle: float  # radians: the warp (or wales) runs along (-sin, cos) of this angle
    yarn_rgb: np.ndarray
    mean_rgb: np.ndarray

    @property
    def words(self) -> str:
        return _WORDS[self.structure]

    @property
    def scale(self) -> float:
        """Defect sizes are given in pixels at 512 px image height."""
        return self.image.shape[0] / REFERENCE_SIDE

    @property
    def luminance(self) -> float:
        return float(self.mean_rgb @ _LUMA)


def smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Value noise: a random grid every ``cell`` px, bicubic-upsampled; about zero mean and unit spread."""
    cell = max(float(cell), 1.0)
    rows, cols = int(height / cell) + 3, int(width / cell) + 3
    grid = rng.standard_normal((rows, cols)).astype(np.float32)
    big = cv2.resize(grid, (int(np.ceil(cols * cell)), int(np.ceil(rows * cell))), interpolation=cv2.INTER_CUBIC)
    return big[:height, :width]


def random_colour(rng: np.random.Generator) -> np.ndarray:
    """Any textile colour: 45 % neutrals (white to black), the rest any hue and saturation."""
    hue = rng.random()
    saturation = rng.uniform(0, 0.12) if rng.random() < 0.45 else rng.uniform(0.2, 0.9)
    value = rng.uniform(0.12, 0.96)
    return np.array(colorsys.hsv_to_rgb(hue, saturation, value), np.float32)


def colour_word(rgb: np.ndarray) -> str:
    """A plain name for a colour, for captions ("dark blue", "light grey")."""
    hue, saturation, value = colorsys.rgb_to_hsv(*(float(c) for c in np.clip(rgb, 0, 1)))
    if saturation < 0.18:
        for limit, name in ((0.2, "black"), (0.38, "charcoal"), (0.62, "grey"), (0.85, "light grey")):
            if value < limit:
                return name
        return "white"
    degrees = hue * 360
    names = ((15, "red"), (40, "orange"), (68, "yellow"), (160, "green"), (195, "teal"), (255, "blue"), (290, "purple"), (345, "pink"))
    name = next((n for limit, n in names if degrees < limit), "red")
    if value < 0.4:
        return f"dark {name}"
    return f"light {name}" if value > 0.8 and saturation < 0.5 else name


def _arch(frac: np.ndarray, power: float) -> np.ndarray:
    """``sin(pi * frac) ** power``, 0 at both ends and never NaN (float32 sin(pi) is a hair below zero)."""
    return np.maximum(np.sin(np.float32(np.pi) * frac), 0) ** np.float32(power)


def _yarns(rng: np.random.Generator, coord: np.ndarray, period: float, spread: float) -> tuple[np.ndarray, np.ndarray]:
    """Yarn index (from 0) and position across the yarn (0-1) at each coordinate, yarn widths irregular."""
    start = float(coord.min()) - 2 * period
    count = int((float(coord.max()) - start) / (0.6 * period)) + 3
    widths = period * np.clip(1 + spread * rng.standard_normal(count), 0.6, 1.6)
    edges = start + np.concatenate([[0.0], np.cumsum(widths)])
    index = np.clip(np.searchsorted(edges, coord, side="right") - 1, 0, count - 1)
    frac = (coord - edges[index]) / widths[index]
    return index, np.clip(frac, 0, 1).astype(np.float32)


def _repeat(rng: np.random.Generator, structure: str) -> np.ndarray:
    """Weave repeat: ``[weft j % n, warp i % m]`` is True where the warp lies on top."""
    if structure == "plain":
        return np.array([[True, False], [False, True]])
    if structure == "basket":
        i, j = np.arange(4)[None, :], np.arange(4)[:, None]
        return (i // 2 + j // 2) % 2 == 0
    if structure == "warp rib":
        i, j = np.arange(2)[None, :], np.arange(4)[:, None]
        return (i + j // 2) % 2 == 0
    if structure == "satin":
        ends, step = [(5, 2), (5, 3), (8, 3), (8, 5)][rng.integers(4)]
        i, j = np.arange(ends)[None, :], np.arange(ends)[:, None]
        binding = (i - step * j) % ends == 0
        return ~binding if rng.random() < 0.5 else binding  # warp- or weft-faced
    repeat, floats = [(3, 1), (3, 2), (4, 1), (4, 2), (4, 3), (5, 2)][rng.integers(6)]
    hand = 1 if rng.random() < 0.5 else -1
    if structure == "twill":
        i, j = np.arange(repeat)[None, :], np.arange(repeat)[:, None]
        return (i + hand * j) % repeat < floats
    # herringbone: a twill whose direction turns every `band` warp yarns
    band = int(rng.integers(3, 8))
    i, j = np.arange(2 * band * repeat)[None, :], np.arange(repeat)[:, None]
    turn = np.where((i // band) % 2 == 0, hand, -hand)
    return (i + turn * j) % repeat < floats


def _woven(rng: np.random.Generator, structure: str, u: np.ndarray, v: np.ndarray, period: float) -> tuple[np.ndarray, ...]:
    """Luminance, warp-on-top mask, warp and weft yarn indices of a woven cloth."""
    spread = rng.uniform(0, 0.18)
    i, fu = _yarns(rng, u, period, spread)
    j, fv = _yarns(rng, v, period * rng.uniform(0.8, 1.25), spread)  # weft density differs from the warp's
    roundness = np.float32(rng.uniform(0.3, 1.0))
    repeat = _repeat(rng, structure)
    top = repeat[j % repeat.shape[0], i % repeat.shape[1]]
    warp_shade = rng.normal(1.0, 0.06, int(i.max()) + 1).astype(np.float32)
    weft_shade = rng.normal(1.0, 0.06, int(j.max()) + 1).astype(np.float32)
    warp = _arch(fu, roundness) * warp_shade[i] * (0.82 + 0.18 * _arch(fv, 1))
    weft = _arch(fv, roundness) * weft_shade[j] * (0.82 + 0.18 * _arch(fu, 1))
    return np.where(top, warp, weft), top, i, j


def _knit(rng: np.random.Generator, structure: str, u: np.ndarray, v: np.ndarray, period: float) -> tuple[np.ndarray, ...]:
    """Luminance, face mask (all True), wale and course indices of a jersey, rib or purl knit."""
    wale, fu = _yarns(rng, u, period * rng.uniform(0.9, 1.3), rng.uniform(0, 0.12))
    course_height = np.float32(period * rng.uniform(0.6, 0.95))
    across = np.abs(fu - np.float32(0.5))  # 0 at a wale's centre, 0.5 at its edges
    rows = v / course_height + np.float32(rng.uniform(0.9, 1.5)) * across  # V-shaped loops
    course = np.floor(v / course_height).astype(np.int64)
    shade = rng.normal(1.0, 0.05, int(wale.max()) + 1).astype(np.float32)
    jersey = _arch(rows % 1, 0.7) * _arch(2 * across, 0.5)
    jersey = jersey * shade[wale]
    bumps = _arch((v / course_height) % 1, 0.8)
    purl = bumps * (0.6 + 0.4 * np.cos(np.float32(2 * np.pi) * (fu + np.float32(0.5) * (course % 2)))) * shade[wale]
    if structure == "jersey":
        lum = jersey
    elif structure == "purl":
        lum = purl
    else:  # rib: groups of face wales beside recessed reverse wales
        knit, reverse = int(rng.integers(1, 3)), int(rng.integers(1, 4))
        lum = np.where(wale % (knit + reverse) < knit, jersey, np.float32(0.6) * purl)
    return lum, np.ones(u.shape, bool), wale, course - course.min()


def _yarn_table(rng: np.random.Generator, count: int, base: np.ndarray, other: np.ndarray, striped: bool) -> np.ndarray:
    """One colour per yarn: ``base`` with a slight dye-lot shade, or stripes of ``other`` in blocks."""
    table = np.repeat(base[None, :], count, axis=0) * rng.normal(1.0, 0.03, (count, 1)).astype(np.float32)
    if striped:
        block, gap = int(rng.integers(2, 14)), int(rng.integers(2, 20))
        stripe = np.arange(count) % (block + gap) < block
        table[stripe] = other
    return np.clip(table, 0, 1)


def _colour(rng: np.random.Generator, structure: str, top: np.ndarray, i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """Per-pixel yarn colour, the colour of loose fibre, and the cloth's colour name."""
    base, other = random_colour(rng), random_colour(rng)
    woven = structure in WOVEN
    kind = rng.choice(
        ["solid", "denim", "stripes", "check", "melange"], p=[0.45, 0.15, 0.15, 0.15, 0.1] if woven else [0.6, 0, 0.2, 0, 0.2]
    )
    if kind == "denim":
        base = np.array(colorsys.hsv_to_rgb(rng.uniform(0.55, 0.68), rng.uniform(0.4, 0.8), rng.uniform(0.25, 0.55)), np.float32)
        other = np.array([0.86, 0.85, 0.8], np.float32) * np.float32(rng.uniform(0.9, 1.05))
    warp_table = _yarn_table(rng, int(i.max()) + 1, base, other, kind == "check" or (kind == "stripes" and woven))
    weft_table = _yarn_table(
        rng, int(j.max()) + 1, other if kind == "denim" else base, other, kind == "check" or (kind == "stripes" and not woven)
    )
    if woven:
        rgb = np.where(top[..., None], warp_table[i], weft_table[j])
    else:
        rgb = weft_table[j] if kind == "stripes" else warp_table[i]
    if kind == "melange":
        fibre = cv2.GaussianBlur(rng.random(top.shape, dtype=np.float32), (3, 3), 0) > np.float32(rng.uniform(0.45, 0.6))
        rgb = np.where(fibre[..., None], rgb, np.float32(0.5) * (rgb + other))
    name = colour_word(base)
    if kind in ("stripes", "check") and colour_word(other) != name:
        name = f"{name} and {colour_word(other)} {'checked' if kind == 'check' else 'striped'}"
    return rgb.astype(np.float32), base, name


def render_cloth(rng: np.random.Generator, height: int, width: int) -> RandomCloth:
    """A random clean cloth filling ``height`` x ``width`` pixels."""
    structure = (WOVEN + KNITTED)[rng.integers(len(WOVEN) + len(KNITTED))]
    period = max(float(np.exp(rng.uniform(np.log(2.5), np.log(22.0)))) * height / REFERENCE_SIDE, _MIN_PERIOD_PX)
    angle = rng.uniform(-np.pi / 2, np.pi / 2) if rng.random() < 0.15 else rng.uniform(-0.21, 0.21)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    cos, sin = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    u, v = x * cos + y * sin, y * cos - x * sin
    wave, cell = np.float32(rng.uniform(0, 0.33) * period), max(period * rng.uniform(5, 12), 8.0)
    u += wave * smooth_noise(rng, height, width, cell)
    v += wave * smooth_noise(rng, height, width, cell)
    if structure in WOVEN:
        lum, top, i, j = _woven(rng, structure, u, v, period)
    else:
        lum, top, i, j = _knit(rng, structure, u, v, period)
    # Uneven yarn thickness and hairiness: slow and fast multiplicative noise.
    lum = lum * (1 + np.float32(rng.uniform(0, 0.12)) * smooth_noise(rng, height, width, period * rng.uniform(2, 6)))
    lum = lum * (1 + np.float32(rng.uniform(0, 0.06)) * rng.standard_normal((height, width), dtype=np.float32))
    rgb, yarn_rgb, name = _colour(rng, structure, top, i, j)
    floor = np.float32(rng.uniform(0.25, 0.6))  # how dark the gaps between yarns are
    image = np.clip(rgb * (floor + (1 - floor) * np.clip(lum, 0, 1.3))[..., None], 0, 1).astype(np.float32)
    return RandomCloth(structure, name, image, period, float(angle), yarn_rgb, image[::4, ::4].mean(axis=(0, 1)))

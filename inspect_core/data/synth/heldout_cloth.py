"""Cloth of the held-out generator family, by texture synthesis (see ``heldout`` for why it exists).

Four textures, none of them built from yarn geometry as the project's generators are:

- ``canvas``: Gabor noise, white noise band-passed by FFT around two orthogonal frequencies (the
  thread pitch), squashed by tanh; it reads as a coarse woven canvas without any weave repeat.
- ``felt``: thousands of short curved fibres drawn with antialiased OpenCV polylines at 2x and
  shrunk; a non-woven with no thread direction at all.
- ``knit``: one stitch (two slanted elliptic arcs) drawn at 4x into a sprite, tiled with overlapping
  courses, then turned.
- ``cord``: raised ridges (corduroy) with a pile of fine multi-octave noise.

Colours come from CIE Lab (OpenCV's conversion) rather than a palette or HSV; a quarter of the cloths
carry a print (dots or diagonal bands) in a second colour. Everything here is written for this family
and imports nothing from the project's other generators.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

TEXTURES = ("canvas", "felt", "knit", "cord")


@dataclass
class Canvas:
    """The cloth being drawn on (``rgb`` is replaced as defects are added) and what defects need of it."""

    rgb: np.ndarray  # H x W x 3 float32, 0-1
    texture: str
    directions: tuple[float, ...]  # thread directions in radians; empty where there are none (felt)
    pitch: float  # thread spacing in pixels
    base: np.ndarray  # the cloth's main colour
    colour_name: str

    @property
    def side(self) -> int:
        return self.rgb.shape[0]

    @property
    def lightness(self) -> float:
        return float(self.rgb[::3, ::3].mean())


def octave_noise(rng: np.random.Generator, height: int, width: int, cell: float, octaves: int = 4) -> np.ndarray:
    """Multi-octave value noise scaled to 0-1: a coarse random grid every ``cell`` px, then finer ones at half weight."""
    total = np.zeros((height, width), np.float32)
    weight, cell = 1.0, max(float(cell), 2.0)
    for _ in range(octaves):
        rows, cols = int(height / cell) + 2, int(width / cell) + 2
        total += np.float32(weight) * cv2.resize(
            rng.random((rows, cols), dtype=np.float32), (width, height), interpolation=cv2.INTER_LINEAR
        )
        weight, cell = weight / 2, max(cell / 2, 2.0)
    low, high = float(total.min()), float(total.max())
    return (total - low) / max(high - low, 1e-6)


def lab_colour(rng: np.random.Generator) -> np.ndarray:
    """A cloth colour drawn in CIE Lab: lightness 15-95, chroma 0-60 (half the cloths nearly grey)."""
    lightness = rng.uniform(15, 95)
    chroma = rng.uniform(0, 8) if rng.random() < 0.5 else rng.uniform(15, 60)
    hue = rng.uniform(0, 2 * np.pi)
    lab = np.array([[[lightness, chroma * np.cos(hue), chroma * np.sin(hue)]]], np.float32)
    return np.clip(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)[0, 0], 0, 1).astype(np.float32)


def name_colour(rgb: np.ndarray) -> str:
    """Words for a colour, from its Lab lightness and hue angle."""
    lightness, a, b = cv2.cvtColor(np.clip(rgb, 0, 1).astype(np.float32).reshape(1, 1, 3), cv2.COLOR_RGB2Lab)[0, 0]
    tone = "dark " if lightness < 35 else "pale " if lightness > 78 else ""
    if np.hypot(a, b) < 10:
        return "black" if lightness < 20 else "white" if lightness > 88 else f"{tone}grey"
    hue = np.degrees(np.arctan2(b, a)) % 360
    names = ((25, "pink"), (60, "red"), (85, "orange"), (110, "yellow"), (170, "green"), (250, "cyan"), (310, "blue"), (360, "violet"))
    return tone + next(name for limit, name in names if hue < limit)


def _gabor_canvas(rng: np.random.Generator, side: int, pitch: float, theta: float) -> np.ndarray:
    spectrum = np.fft.rfft2(rng.standard_normal((side, side)))
    fy, fx = np.fft.fftfreq(side)[:, None], np.fft.rfftfreq(side)[None, :]
    frequency, spread = 1 / pitch, rng.uniform(0.12, 0.3) / pitch
    passband = np.zeros(spectrum.shape)
    for angle in (theta, theta + np.pi / 2):
        for sign in (1, -1):
            fx0, fy0 = sign * frequency * np.cos(angle), sign * frequency * np.sin(angle)
            passband += np.exp(-((fx - fx0) ** 2 + (fy - fy0) ** 2) / (2 * spread**2))
    field = np.fft.irfft2(spectrum * passband, s=(side, side))
    field /= max(float(field.std()), 1e-9)
    return (0.5 + 0.5 * np.tanh(rng.uniform(0.8, 2.5) * field)).astype(np.float32)


def _felt(rng: np.random.Generator, side: int, pitch: float) -> np.ndarray:
    big = np.full((2 * side, 2 * side), 0.45, np.float32)
    count = int(min(9000, 4 * side * side / pitch**2))
    # Every fibre: three steps from a random start, turning by a constant bend, drawn at one of 8 brightnesses.
    heading = rng.uniform(0, 2 * np.pi, count)[:, None] + rng.normal(0, 0.5, count)[:, None] * np.arange(1, 4)
    step = (2 * pitch * rng.uniform(2, 8, count) / 3)[:, None]
    moves = np.stack([step * np.cos(heading), step * np.sin(heading)], axis=2)
    points = rng.uniform(0, 2 * side, (count, 1, 2)) + np.concatenate([np.zeros((count, 1, 2)), np.cumsum(moves, axis=1)], axis=1)
    points = points.astype(np.int32)
    level = rng.integers(0, 8, count)
    for k, brightness in enumerate(np.linspace(0.35, 1.0, 8)):
        cv2.polylines(big, list(points[level == k]), False, float(brightness), 1, cv2.LINE_AA)
    return cv2.resize(big, (side, side), interpolation=cv2.INTER_AREA)


def _turned(image: np.ndarray, side: int, theta: float) -> np.ndarray:
    """The centre ``side`` x ``side`` of ``image`` turned by ``theta`` radians."""
    h, w = image.shape
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), float(np.degrees(theta)), 1.0)
    matrix[:, 2] -= [(w - side) / 2, (h - side) / 2]
    return cv2.warpAffine(image, matrix, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _knit(rng: np.random.Generator, side: int, pitch: float, theta: float) -> np.ndarray:
    cell_w, cell_h, supersample = max(pitch * rng.uniform(1.0, 1.4), 3.0), max(pitch * rng.uniform(0.7, 1.0), 2.5), 8
    sprite = np.zeros((int(2 * cell_h * supersample), int(cell_w * supersample)), np.float32)
    h, w = sprite.shape
    axes = (max(int(w / 4), 1), max(int(h / 2.2), 1))
    thickness = max(int(w / 5), 1)
    cv2.ellipse(sprite, (int(w * 0.3), h // 2), axes, -18, 0, 360, 1.0, thickness, cv2.LINE_AA)
    cv2.ellipse(sprite, (int(w * 0.7), h // 2), axes, 18, 0, 360, 1.0, thickness, cv2.LINE_AA)
    sprite = cv2.GaussianBlur(sprite, (0, 0), supersample / 2)
    small = cv2.resize(sprite, (max(int(round(cell_w)), 2), max(int(round(2 * cell_h)), 2)), interpolation=cv2.INTER_AREA)
    reach = int(side * 1.5) + 8
    tiled = np.tile(small, (reach // small.shape[0] + 2, reach // small.shape[1] + 2))
    tiled = np.maximum(tiled, np.roll(tiled, small.shape[0] // 2, axis=0) * np.float32(0.85))  # overlapping courses
    tiled /= max(float(tiled.max()), 1e-6)
    return _turned(tiled[:reach, :reach], side, theta)


def _cord(rng: np.random.Generator, side: int, pitch: float, theta: float) -> np.ndarray:
    wale = pitch * rng.uniform(1.5, 3.5)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    across = (xx * np.float32(np.cos(theta)) + yy * np.float32(np.sin(theta))) / np.float32(wale)
    ridge = np.maximum(np.cos(np.float32(np.pi) * ((across % 1) - np.float32(0.5))), 0) ** np.float32(rng.uniform(0.6, 2.0))
    pile = octave_noise(rng, side, side, max(pitch / 2, 2.0), 3)
    return (np.float32(0.75) * ridge + np.float32(0.25) * pile).astype(np.float32)


def _print(rng: np.random.Generator, side: int) -> np.ndarray:
    """Where a print covers the cloth (0-1): dots on a grid or diagonal bands."""
    cover = np.zeros((side, side), np.float32)
    spacing = rng.uniform(0.05, 0.2) * side
    if rng.random() < 0.5:
        radius = max(int(spacing * rng.uniform(0.15, 0.35)), 1)
        for y in np.arange(rng.uniform(0, spacing), side, spacing):
            for x in np.arange(rng.uniform(0, spacing), side, spacing):
                cv2.circle(cover, (int(x), int(y)), radius, 1.0, -1, cv2.LINE_AA)
    else:
        yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
        cover = ((xx + yy) % np.float32(spacing) < np.float32(spacing * rng.uniform(0.2, 0.5))).astype(np.float32)
        cover = cv2.GaussianBlur(cover, (0, 0), 0.7)
    return cover


def make_canvas(rng: np.random.Generator, side: int) -> Canvas:
    """A random clean cloth, ``side`` px square."""
    texture = TEXTURES[rng.integers(len(TEXTURES))]
    pitch = max(float(rng.uniform(3, 16)) * side / 512, 2.5)
    theta = rng.uniform(-0.3, 0.3) if rng.random() < 0.8 else rng.uniform(0, np.pi)
    if texture == "canvas":
        relief, directions = _gabor_canvas(rng, side, pitch, theta), (theta, theta + np.pi / 2)
    elif texture == "felt":
        relief, directions = _felt(rng, side, pitch), ()
    elif texture == "knit":
        relief, directions = _knit(rng, side, pitch, theta), (theta + np.pi / 2,)
    else:
        relief, directions = _cord(rng, side, pitch, theta), (theta + np.pi / 2,)
    base = lab_colour(rng)
    depth = np.float32(rng.uniform(0.3, 0.7))  # how much darker the texture's valleys are than its peaks
    shade = (1 - depth) + depth * relief
    shade *= 1 + np.float32(rng.uniform(0, 0.1)) * (octave_noise(rng, side, side, side / 3, 3) - np.float32(0.5))
    rgb = base[None, None, :] * shade[..., None]
    name = name_colour(base)
    if rng.random() < 0.25:
        ink = lab_colour(rng)
        cover = _print(rng, side)[..., None] * np.float32(rng.uniform(0.6, 0.95))
        rgb = rgb * (1 - cover) + ink * shade[..., None] * cover
        name = f"{name_colour(ink)}-printed {name}"
    return Canvas(np.clip(rgb, 0, 1).astype(np.float32), texture, tuple(float(d) for d in directions), pitch, base, name)

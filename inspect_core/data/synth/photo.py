"""How the ``randomised`` style photographs its cloth: layouts around the cloth and camera effects.

Layouts (drawn first, from the finishing stream, so a defect-free render has the same framing):

- ``full`` (55 %): the cloth fills the frame under a mild perspective (corners pushed out by up to
  8 % of the side, so no background shows).
- ``background`` (25 %): the cloth lies on a table, metal plate, belt or wood, scaled to 55-90 %,
  turned by up to 29 degrees, in perspective; the rest of the frame is that background.
- ``linescan`` (20 %; always for frames at least 1.5x wider than high): a line-scan strip, the cloth
  between blank margins (unlit or backlit roller), one or both sides, with a selvage band at the edge,
  per-column sensor gain (PRNU), per-row light flicker and light falling off towards the strip's ends.

Camera effects: uneven light (gradient, vignette, hot spot), colour cast and white balance,
saturation, blur (gaussian, motion, defocus; at most about 1.3 px sigma at 256 px, so labels stay
within a few pixels of what shows), gamma, read and shot noise, JPEG at quality 35-95 (15 % lossless).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from inspect_core.data.synth.cloth import _encode_jpeg
from inspect_core.data.synth.random_cloth import random_colour, smooth_noise

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
LAYOUTS = ("full", "background", "linescan")
_WIDE_STRIP = 1.5  # frames this much wider than high are line-scan strips


@dataclass(frozen=True)
class Layout:
    """Where the cloth lies in the frame: ``homography`` maps cloth pixels to frame pixels (None: the same)."""

    name: str
    homography: np.ndarray | None
    placeable: np.ndarray  # H x W bool, cloth coordinates: where a defect's centre may go (shown, away from edges)
    margins: tuple[int, int]  # blank columns at the left and right of a line-scan frame
    scale: float  # cloth pixels per frame pixel, about

    def warp(self, plane: np.ndarray, border: int = cv2.BORDER_CONSTANT) -> np.ndarray:
        """``plane`` (in cloth coordinates) as it shows in the frame."""
        if self.homography is None:
            return plane
        height, width = plane.shape[:2]
        return cv2.warpPerspective(plane, self.homography, (width, height), flags=cv2.INTER_LINEAR, borderMode=border, borderValue=0)


def draw_layout(rng: np.random.Generator, height: int, width: int) -> Layout:
    margin = max(2, int(0.05 * height))
    name = "linescan" if width >= _WIDE_STRIP * height else str(rng.choice(LAYOUTS, p=[0.55, 0.25, 0.2]))
    if name == "linescan":
        if width >= _WIDE_STRIP * height:
            left, right = (int(rng.uniform(0.02, 0.1) * width) for _ in range(2))
        else:
            sides = str(rng.choice(["left", "right", "both"], p=[0.4, 0.4, 0.2]))
            shares = rng.uniform(0.1, 0.3, 2)
            left = int(shares[0] * width) if sides in ("left", "both") else 0
            right = int(shares[1] * width) if sides in ("right", "both") else 0
        placeable = np.zeros((height, width), bool)
        placeable[margin : height - margin, left + margin : width - right - margin] = True
        return Layout(name, None, placeable, (left, right), 1.0)
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float64)
    if name == "full":
        outward = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64)
        target, scale = corners + outward * rng.uniform(0, 0.08 * height, (4, 2)), 1.0
    else:
        scale, turn = rng.uniform(0.55, 0.9), rng.uniform(-0.5, 0.5)
        rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
        centre = np.array([width / 2, height / 2]) * (1 + rng.uniform(-0.2, 0.2, 2))
        target = (corners - [width / 2, height / 2]) * scale @ rotation.T + centre + rng.normal(0, 0.03 * height, (4, 2))
    homography = cv2.getPerspectiveTransform(corners.astype(np.float32), target.astype(np.float32))
    inner = np.zeros((height, width), np.uint8)
    inner[margin : height - margin, margin : width - margin] = 1
    # A cloth pixel p is placeable where the frame shows it: inner(H p), i.e. the inverse-mapped warp.
    flags = cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
    placeable = cv2.warpPerspective(inner, homography, (width, height), flags=flags, borderValue=0) > 0
    placeable &= inner > 0
    return Layout(name, homography, placeable, (0, 0), float(scale))


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A table, metal plate, conveyor belt or wood around the cloth."""
    kind = str(rng.choice(["table", "metal", "belt", "wood"]))
    if kind == "table":
        base = random_colour(rng)
        texture = 1 + np.float32(0.08) * smooth_noise(rng, height, width, height / 4)
    elif kind == "metal":
        base = np.full(3, rng.uniform(0.45, 0.8), np.float32) * rng.normal(1, 0.03, 3).astype(np.float32)
        streaks = cv2.blur(rng.standard_normal((height, width), dtype=np.float32), (max(3, width // 6), 1))
        texture = 1 + np.float32(0.12) * streaks / max(float(streaks.std()), 1e-6)
    elif kind == "belt":
        base = np.full(3, rng.uniform(0.05, 0.25), np.float32) * rng.normal(1, 0.1, 3).astype(np.float32)
        texture = 1 + np.float32(0.15) * cv2.GaussianBlur(rng.standard_normal((height, width), dtype=np.float32), (0, 0), 1.0)
    else:
        base = np.array([0.55, 0.38, 0.2], np.float32) * np.float32(rng.uniform(0.6, 1.1))
        rows = np.arange(height, dtype=np.float32)[:, None] + np.float32(0.1 * height) * smooth_noise(rng, height, width, width / 3)
        texture = 0.85 + 0.15 * np.sin(rows / np.float32(rng.uniform(3, 9) * height / 256)) ** 2
    return np.clip(base * texture[..., None], 0, 1).astype(np.float32)


def compose(rng: np.random.Generator, layout: Layout, cloth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The frame (cloth laid out over its surroundings) and the cloth's coverage of each frame pixel (0-1)."""
    height, width = cloth.shape[:2]
    if layout.name == "linescan":
        left, right = layout.margins
        coverage = np.zeros((height, width), np.float32)
        coverage[:, left : width - right] = 1
        tone = str(rng.choice(["unlit", "backlit", "roller"], p=[0.6, 0.25, 0.15]))
        level = {"unlit": (0.02, 0.12), "backlit": (0.85, 0.97), "roller": (0.3, 0.5)}[tone]
        blank = np.full(3, rng.uniform(*level), np.float32) * rng.normal(1, 0.02, 3).astype(np.float32)
        frame = np.where(coverage[..., None] > 0, cloth, blank).astype(np.float32)
        selvage, gain = max(2, int(rng.uniform(0.01, 0.04) * width)), np.float32(rng.uniform(0.7, 1.2))
        if left:
            frame[:, left : left + selvage] *= gain
        if right:
            frame[:, width - right - selvage : width - right] *= gain
        return np.clip(frame, 0, 1), coverage
    background = _background(rng, height, width)
    source = cv2.GaussianBlur(cloth, (0, 0), 0.35 / layout.scale) if layout.scale < 0.8 else cloth  # no aliasing when shrunk
    warped = layout.warp(source, cv2.BORDER_REPLICATE)
    coverage = layout.warp(np.ones((height, width), np.float32))
    frame = warped * coverage[..., None] + background * (1 - coverage[..., None])
    return frame.astype(np.float32), coverage


def _light(rng: np.random.Generator, layout: Layout, height: int, width: int) -> np.ndarray:
    y = (np.arange(height, dtype=np.float32) / np.float32(height) - np.float32(0.5))[:, None]
    x = (np.arange(width, dtype=np.float32) / np.float32(width) - np.float32(0.5))[None, :]
    if layout.name == "linescan":
        profile = 1 - np.float32(rng.uniform(0, 0.4)) * (2 * x) ** 2  # the line light falls off towards the strip's ends
        flicker = rng.normal(1, 0.01, (height, 1)).astype(np.float32)
        prnu = rng.normal(1, 0.015, (1, width)).astype(np.float32)
        return profile * flicker * prnu
    angle = rng.uniform(0, 2 * np.pi)
    ramp = 1 + np.float32(rng.uniform(0, 0.4)) * (np.float32(np.cos(angle)) * x + np.float32(np.sin(angle)) * y)
    vignette = 1 - np.float32(rng.uniform(0, 0.6)) * (x**2 + y**2)
    spot = np.float32(rng.uniform(0.1, 0.35)) if rng.random() < 0.3 else np.float32(0)
    sx, sy = rng.uniform(-0.4, 0.4, 2)
    hot = 1 + spot * np.exp(-((x - np.float32(sx)) ** 2 + (y - np.float32(sy)) ** 2) / np.float32(2 * 0.15**2))
    return ramp * vignette * hot


def _blur(rng: np.random.Generator, image: np.ndarray, layout: Layout) -> np.ndarray:
    reference = image.shape[0] / 256
    kind = str(rng.choice(["none", "gaussian", "motion", "defocus"], p=[0.4, 0.35, 0.15, 0.1]))
    if kind == "gaussian":
        return cv2.GaussianBlur(image, (0, 0), rng.uniform(0.4, 1.3) * reference)
    if kind == "none":
        return image
    if kind == "motion":
        length = max(3, int(rng.uniform(3, 7) * reference)) | 1
        angle = np.pi / 2 if layout.name == "linescan" else rng.uniform(0, np.pi)
        kernel = np.zeros((length, length), np.float32)
        half = (length - 1) / 2
        dx, dy = half * np.cos(angle), half * np.sin(angle)
        cv2.line(kernel, (int(round(half - dx)), int(round(half - dy))), (int(round(half + dx)), int(round(half + dy))), 1.0, 1)
    else:
        radius = max(1, int(round(rng.uniform(1, 2) * reference)))
        kernel = np.zeros((2 * radius + 1, 2 * radius + 1), np.float32)
        cv2.circle(kernel, (radius, radius), radius, 1.0, -1)
    return cv2.filter2D(image, -1, kernel / kernel.sum())


def finish(rng: np.random.Generator, frame: np.ndarray, layout: Layout) -> np.ndarray:
    """Camera effects on the composed frame; returns the 8-bit RGB image (JPEG-degraded in 85 % of frames)."""
    height, width = frame.shape[:2]
    image = frame * _light(rng, layout, height, width)[..., None]
    cast = np.clip(rng.normal(1, 0.07, 3), 0.8, 1.2).astype(np.float32)
    if rng.random() < 0.3:
        cast *= np.array([1.08, 1.0, 0.85] if rng.random() < 0.5 else [0.88, 0.97, 1.1], np.float32)  # tungsten or shade
    image = image * cast
    grey = (image @ _LUMA)[..., None]
    image = grey + np.float32(rng.uniform(0.6, 1.25)) * (image - grey)
    image = _blur(rng, np.clip(image, 0, 1).astype(np.float32), layout)
    image = np.clip(image, 0, 1) ** np.float32(rng.uniform(0.8, 1.25))
    quiet = layout.name == "linescan"  # line-scan sensors are cooled and well lit
    read = np.float32(rng.uniform(0.002, 0.015 if quiet else 0.03))
    shot = np.float32(rng.uniform(0, 0.01 if quiet else 0.03))
    image = image + rng.standard_normal(image.shape, dtype=np.float32) * (read + shot * np.sqrt(image))
    pixels = np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < 0.85:
        quality = int(rng.integers(35, 96))
        decoded = cv2.imdecode(np.frombuffer(_encode_jpeg(pixels, quality), np.uint8), cv2.IMREAD_COLOR)
        pixels = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    return pixels

"""Defects of the held-out generator family, drawn as shapes (see ``heldout`` for why it exists).

Each drawer takes the whole cloth and returns the whole cloth with one new defect and a phrase; the
caller labels what visibly changed. Holes and cuts are polygons filled at 4x and shrunk (a soft
edge) with loose fibres drawn across the rim; stains are multi-octave noise thresholded under an
elliptic falloff; broken yarns are antialiased polylines along one of the cloth's thread directions
(any direction on felt, and sometimes any on other cloth), with curled ends; knots are clusters of
shaded beads; wrinkles displace the cloth itself (``cv2.remap``) across a curved crest and shade the
slopes. Written for this family only.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from inspect_core.data.synth.heldout_cloth import Canvas, lab_colour, octave_noise

_SUPERSAMPLE = 4


def _supersampled(side: int, draw: Callable[[np.ndarray], None]) -> np.ndarray:
    """A soft 0-1 mask drawn by ``draw`` on a 4x canvas (coordinates already multiplied) and shrunk."""
    big = np.zeros((side * _SUPERSAMPLE, side * _SUPERSAMPLE), np.uint8)
    draw(big)
    return cv2.resize(big, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32) / 255


def _through(rng: np.random.Generator, canvas: Canvas) -> np.ndarray:
    """What an opening shows: the dark machine bed, a bright table or a coloured lining, away from the cloth's lightness."""
    lining = lab_colour(rng)
    if abs(float(lining.mean()) - canvas.lightness) > 0.35 and rng.random() < 0.3:
        return lining
    return np.full(3, 0.06 if canvas.lightness > 0.45 else 0.9, np.float32) * rng.uniform(0.8, 1.1, 3).astype(np.float32)


def _over(rgb: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> np.ndarray:
    a = alpha[..., None]
    return rgb * (1 - a) + colour * a


def _centre(rng: np.random.Generator, side: int, keep: float = 0.1) -> np.ndarray:
    return rng.uniform(keep * side, (1 - keep) * side, 2)


def draw_hole(rng: np.random.Generator, canvas: Canvas) -> tuple[np.ndarray, str]:
    side, k = canvas.side, _SUPERSAMPLE
    centre = _centre(rng, side)
    cut = rng.random() < 0.3
    if cut:  # a lens-shaped slit
        length, half_width, angle = rng.uniform(0.06, 0.3) * side, rng.uniform(0.004, 0.014) * side, rng.uniform(0, np.pi)
        t = np.linspace(-1, 1, 14)
        along, across = np.array([np.cos(angle), np.sin(angle)]), np.array([-np.sin(angle), np.cos(angle)])
        edge = half_width * np.sqrt(1 - t**2) + 0.3
        outline = np.concatenate([centre + np.outer(t * length / 2, along) + np.outer(s * edge, across) for s in (1, -1)])
        outline = np.concatenate([outline[:14], outline[14:][::-1]])
        size = length
    else:
        radius, corners = rng.uniform(0.012, 0.09) * side, int(rng.integers(9, 17))
        angles = np.sort(rng.uniform(0, 2 * np.pi, corners))
        radii = radius * rng.uniform(0.6, 1.3, corners)
        outline = centre + np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
        size = 2 * radius
    opening = _supersampled(side, lambda big: cv2.fillPoly(big, [np.round(outline * k).astype(np.int32)], 255, cv2.LINE_AA))
    rgb = _over(canvas.rgb, opening, _through(rng, canvas))
    fibres = []  # loose fibres across the rim, from the cloth into the opening
    for _ in range(int(rng.integers(4, 14))):
        start = outline[rng.integers(len(outline))]
        heading = np.arctan2(*(centre - start)[::-1]) + rng.normal(0, 0.6)
        reach = rng.uniform(0.2, 0.6) * size / 2 + 1
        fibres.append(np.round(np.array([start, start + reach * np.array([np.cos(heading), np.sin(heading)])]) * k).astype(np.int32))
    strands = _supersampled(side, lambda big: cv2.polylines(big, fibres, False, 255, max(1, k // 2), cv2.LINE_AA))
    rgb = _over(rgb, strands * np.float32(0.9), np.clip(canvas.base * 1.15 + 0.05, 0, 1))
    words = "slit" if cut else "small ragged" if size < 0.08 * side else "ragged"
    return rgb, f"{words} hole"


def draw_stain(rng: np.random.Generator, canvas: Canvas) -> tuple[np.ndarray, str]:
    side = canvas.side
    cx, cy = _centre(rng, side)
    radius, aspect, angle = rng.uniform(0.04, 0.16) * side, rng.uniform(0.6, 1.6), rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    dx, dy = xx - np.float32(cx), yy - np.float32(cy)
    along = (dx * np.float32(np.cos(angle)) + dy * np.float32(np.sin(angle))) / np.float32(radius)
    across = (dy * np.float32(np.cos(angle)) - dx * np.float32(np.sin(angle))) / np.float32(radius * aspect)
    field = 1 - np.hypot(along, across) + np.float32(0.6) * (octave_noise(rng, side, side, radius / 2, 3) - np.float32(0.5))
    opacity = rng.uniform(0.2, 0.85)
    alpha = np.clip((field - np.float32(0.1)) / np.float32(0.25), 0, 1) * np.float32(opacity)
    mode = str(rng.choice(["darker", "lighter", "coloured"]))
    if mode == "darker":
        rgb = canvas.rgb * (1 - alpha[..., None] * np.float32(rng.uniform(0.3, 0.7)))
    elif mode == "lighter":
        rgb = canvas.rgb + alpha[..., None] * (1 - canvas.rgb) * np.float32(rng.uniform(0.3, 0.7))
    else:
        rgb = _over(canvas.rgb, alpha, lab_colour(rng))
    if rng.random() < 0.4:  # a dried ring at the edge
        rgb = rgb * (1 - np.float32(0.3) * 4 * alpha * (np.float32(opacity) - alpha) / np.float32(opacity**2))[..., None]
    return np.clip(rgb, 0, 1), f"{'faint ' if opacity < 0.4 else ''}{mode} stain"


def draw_broken_yarn(rng: np.random.Generator, canvas: Canvas) -> tuple[np.ndarray, str]:
    side, k = canvas.side, _SUPERSAMPLE
    if canvas.directions and rng.random() < 0.85:
        theta = canvas.directions[rng.integers(len(canvas.directions))]
    else:
        theta = rng.uniform(0, np.pi)
    length = rng.uniform(0.15, 0.7) * side
    centre = _centre(rng, side)
    t = np.linspace(-0.5, 0.5, 20)
    wobble = rng.uniform(0, 0.006) * side * np.sin(t * rng.uniform(4, 12) + rng.uniform(0, 6))
    direction, normal = np.array([np.cos(theta), np.sin(theta)]), np.array([-np.sin(theta), np.cos(theta)])
    path = centre + np.outer(t * length, direction) + np.outer(wobble, normal)
    width = max(int(round(rng.uniform(0.6, 3.5) * side / 256 * k)), 1)
    line = _supersampled(side, lambda big: cv2.polylines(big, [np.round(path * k).astype(np.int32)], False, 255, width, cv2.LINE_AA))
    mode = str(rng.choice(["gap", "pulled", "thick"]))
    if mode == "gap":
        rgb = _over(canvas.rgb, line, _through(rng, canvas))
    elif mode == "pulled":  # a tight light thread with puckered shadows either side
        offset = (width / k + 1.5) * normal
        shadow = _supersampled(side, lambda big: cv2.polylines(
            big, [np.round((path + s * offset) * k).astype(np.int32) for s in (1, -1)], False, 255, width, cv2.LINE_AA))  # fmt: skip
        rgb = canvas.rgb * (1 - np.float32(0.45) * shadow[..., None])
        rgb = _over(rgb, line, np.clip(canvas.base * 1.4 + 0.15, 0, 1))
    else:
        rgb = _over(canvas.rgb, line * np.float32(0.85), np.clip(canvas.base * (0.45 if canvas.lightness > 0.5 else 1.8) + 0.03, 0, 1))
    if rng.random() < 0.5:  # a curled loose end
        end = path[-1] if rng.random() < 0.5 else path[0]
        curl, turn = max(int(rng.uniform(1.5, 4) * side / 256 * k), 2), int(rng.integers(180, 330))
        centre_px = (int(round(end[0] * k)), int(round(end[1] * k)))
        arc = _supersampled(side, lambda big: cv2.ellipse(big, centre_px, (curl, curl), 0, 0, turn, 255, max(width, 2), cv2.LINE_AA))
        rgb = _over(rgb, arc, np.clip(canvas.base * 1.3 + 0.1, 0, 1) if canvas.lightness < 0.5 else canvas.base * 0.4)
    words = {"gap": "broken yarn gap", "pulled": "pulled broken yarn", "thick": "thick broken yarn"}[mode]
    return rgb, words


def draw_knot(rng: np.random.Generator, canvas: Canvas) -> tuple[np.ndarray, str]:
    side = canvas.side
    cx, cy = _centre(rng, side)
    size = rng.uniform(0.008, 0.03) * side + 1.5
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    height = np.zeros((side, side), np.float32)
    cover = np.zeros((side, side), np.float32)
    for _ in range(int(rng.integers(3, 7))):
        bx, by = rng.normal([cx, cy], size * 0.6)
        bead = np.float32(max(size * rng.uniform(0.5, 1.0), 1.2))
        distance = np.hypot(xx - np.float32(bx), yy - np.float32(by))
        height = np.maximum(height, np.sqrt(np.clip(bead**2 - distance**2, 0, None)))
        cover = np.maximum(cover, np.clip(bead + np.float32(0.5) - distance, 0, 1))
    gy, gx = np.gradient(height)
    light = rng.uniform(0, 2 * np.pi)
    shading = np.clip(0.75 - 0.6 * (gx * np.float32(np.cos(light)) + gy * np.float32(np.sin(light))), 0.2, 1.3)
    kind = str(rng.choice(["light", "dark", "odd-coloured"]))
    if kind == "light" or (kind == "dark" and canvas.lightness < 0.35):
        kind, colour = "light", np.clip(canvas.base * 1.3 + 0.2, 0, 1)
    elif kind == "dark":
        colour = canvas.base * np.float32(0.45)
    else:
        colour = lab_colour(rng)
    rgb = _over(canvas.rgb, cover, np.clip(colour[None, None, :] * shading[..., None], 0, 1))
    return rgb.astype(np.float32), f"{kind} knot"


def draw_wrinkle(rng: np.random.Generator, canvas: Canvas) -> tuple[np.ndarray, str]:
    side = canvas.side
    cx, cy = _centre(rng, side, 0.2)
    theta, length = rng.uniform(0, np.pi), rng.uniform(0.35, 0.95) * side
    sigma = rng.uniform(0.008, 0.04) * side + 1
    bow = rng.uniform(-0.1, 0.1) * length
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    cos, sin = np.float32(np.cos(theta)), np.float32(np.sin(theta))
    t = ((xx - np.float32(cx)) * cos + (yy - np.float32(cy)) * sin) / np.float32(length / 2)
    n = (yy - np.float32(cy)) * cos - (xx - np.float32(cx)) * sin - np.float32(bow) * (1 - t * t)
    # The fold's height: a Gaussian across the crest, brought to exactly zero 2.5 sigma out (a long shallow
    # tail would shift a fine texture by a pixel far from what anyone would call the fold).
    across = np.exp(-(n**2) / np.float32(2 * sigma**2)) * np.clip(1 - (n / np.float32(2.5 * sigma)) ** 2, 0, 1)
    bump = across * np.sqrt(np.clip(1 - t * t, 0, 1))
    pull = np.float32(rng.uniform(0.6, 1.6) * sigma) * (n / np.float32(sigma)) * bump  # cloth drawn towards the crest
    shifted = cv2.remap(canvas.rgb, xx - pull * -sin, yy - pull * cos, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    slope = -(n / np.float32(sigma)) * bump * np.float32(rng.choice([-1.0, 1.0]))
    rgb = shifted * (1 + np.float32(rng.uniform(0.25, 0.5)) * slope)[..., None]
    return np.clip(rgb, 0, 1).astype(np.float32), f"{'crease' if sigma < 0.02 * side else 'fold'} wrinkle"


DRAWERS: dict[str, Callable[[np.random.Generator, Canvas], tuple[np.ndarray, str]]] = {
    "hole": draw_hole,
    "stain": draw_stain,
    "broken_yarn": draw_broken_yarn,
    "wrinkle": draw_wrinkle,
    "knot": draw_knot,
}

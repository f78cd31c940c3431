"""Defect painters of the ``randomised`` style: shapes with the variety real defects have.

Each painter draws one defect of its class centred at a given pixel of a :class:`RandomCloth`, as a
``_Patch`` (the cloth there becomes ``cloth * gain + offset``); what it changed visibly becomes the
label (see ``randomised``). Compared with the default painters:

- ``hole``: round holes with frayed edges (yarn ends poke in along the cloth's own yarn directions),
  straight cuts (slits that gape in the middle), jagged tears along a random polyline, burn holes
  with a charred rim; what shows through is dark, lit or a coloured backing, whichever contrasts.
- ``stain``: blobs, streaks and spatters; oil, rust, ink, dye, bleach or water marks; opacity
  0.15-0.9, so stains of any contrast (one that shows nowhere by 0.1 is drawn again: ``randomised``).
- ``broken_yarn``: thin (1-2.5 px at 512) or thick (2.5-7 px) lines along the warp, the weft or at
  any angle; missing yarns (a gap), raised thick yarns and loose wavy yarns with a shadow, frayed
  ends with a tuft.
- ``knot``: single lumps, tangled clumps (several lumps heaped or strung along a yarn, with a fibrous
  outline, up to about a fifth of the image as real knots are) and slubs (thick, elongated places along
  a yarn); lit from any side, lighter, darker, in a foreign colour or the cloth's own.
- ``wrinkle``: soft folds and sharp creases at any angle, lit from either side.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from inspect_core.data.synth.cloth import _blend, _grid, _Patch, _shade, _stack, _yarn_ends
from inspect_core.data.synth.random_cloth import RandomCloth, random_colour

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
_TINTS = {
    "oily": (0.32, 0.27, 0.2),
    "rust": (0.75, 0.4, 0.14),
    "ink": (0.12, 0.16, 0.5),
}


def _size_word(size: float, cloth: RandomCloth) -> str:
    fraction = size / cloth.image.shape[0]
    return "small" if fraction < 0.06 else "medium" if fraction < 0.15 else "large"


def _polyline_distance(xx: np.ndarray, yy: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance from each pixel to the polyline through ``points`` (N x 2), and where along it (0-1) the nearest point lies."""
    best = np.full(np.broadcast(xx, yy).shape, np.inf, np.float32)
    along = np.zeros_like(best)
    lengths = np.hypot(*np.diff(points, axis=0).T)
    total, walked = max(float(lengths.sum()), 1e-6), 0.0
    for (ax, ay), (bx, by), length in zip(points[:-1], points[1:], lengths):
        dx, dy = np.float32(bx - ax), np.float32(by - ay)
        t = np.clip(((xx - np.float32(ax)) * dx + (yy - np.float32(ay)) * dy) / np.float32(max(length**2, 1e-6)), 0, 1)
        distance = np.hypot(xx - np.float32(ax) - t * dx, yy - np.float32(ay) - t * dy)
        closer = distance < best
        best = np.where(closer, distance, best)
        along = np.where(closer, (np.float32(walked) + t * np.float32(length)) / np.float32(total), along)
        walked += float(length)
    return best, along


def _window(points: np.ndarray, margin: float) -> tuple[int, int]:
    """Half width and half height of a window around the origin holding ``points`` plus ``margin``."""
    return int(np.ceil(np.abs(points[:, 0]).max() + margin)), int(np.ceil(np.abs(points[:, 1]).max() + margin))


def _contrasting(rng: np.random.Generator, cloth: RandomCloth) -> np.ndarray:
    """What shows through an opening: a dark gap, a lit table or a coloured backing, whichever contrasts with the cloth."""
    options = [np.full(3, rng.uniform(0.02, 0.1), np.float32), np.full(3, rng.uniform(0.8, 0.95), np.float32), random_colour(rng)]
    for k in rng.permutation(3):
        if abs(float(options[k] @ _LUMA) - cloth.luminance) >= 0.3:
            return options[k]
    return options[0] if cloth.luminance > 0.5 else options[1]


def _paint_hole(rng: np.random.Generator, cloth: RandomCloth, cx: int, cy: int) -> _Patch:
    s = cloth.scale
    kind = str(rng.choice(["frayed", "slit", "torn", "burnt"], p=[0.45, 0.2, 0.25, 0.1]))
    if kind in ("frayed", "burnt"):
        radius = max(rng.uniform(3, 40) * s, 1.5)
        half_w = half_h = int(np.ceil(radius * 1.8 + 10 * s + 3))
        yy, xx = _grid(half_w, half_h)
        theta = np.arctan2(yy, xx)
        outline = np.ones_like(theta)
        for k in range(2, 7):
            outline += np.float32(rng.uniform(0, 0.5) / k) * np.cos(k * theta + np.float32(rng.uniform(0, 2 * np.pi)))
        signed = np.hypot(xx, yy) - np.float32(radius) * outline
        size, width = 2 * radius, radius
    else:
        length = rng.uniform(12, 120) * s
        if kind == "slit":
            phi = rng.uniform(0, np.pi)
            points = np.array([[-np.cos(phi), -np.sin(phi)], [np.cos(phi), np.sin(phi)]]) * length / 2
            width = max(rng.uniform(1.0, 3.0) * s, 0.8)
        else:
            steps, heading = int(rng.integers(2, 5)), rng.uniform(0, 2 * np.pi)
            points = [np.zeros(2)]
            for _ in range(steps):
                heading += rng.normal(0, 0.8)
                points.append(points[-1] + length / steps * np.array([np.cos(heading), np.sin(heading)]))
            points = np.array(points) - np.mean(points, axis=0)
            width = max(rng.uniform(1.5, 7.0) * s, 1.0)
        half_w, half_h = _window(points, width + 10 * s + 3)
        yy, xx = _grid(half_w, half_h)
        distance, along = _polyline_distance(xx, yy, points)
        middle = np.sqrt(np.clip(1 - (2 * along - 1) ** 2, 0, 1))
        # A cut gapes in its middle; a tear stays open along its length.
        gape = np.float32(width) * (middle if kind == "slit" else np.float32(0.5) + np.float32(0.5) * middle)
        signed = distance - gape
        size = length
    if kind != "slit" or rng.random() < 0.5:
        # Frayed edge: cut yarns reach into the opening by their own lengths, along the cloth's yarn directions.
        cos, sin = np.float32(np.cos(cloth.angle)), np.float32(np.sin(cloth.angle))
        u = (xx + np.float32(cx)) * cos + (yy + np.float32(cy)) * sin
        v = (yy + np.float32(cy)) * cos - (xx + np.float32(cx)) * sin
        reach = min(max(0.25 * size, 2.0), 14 * s + 2, 0.6 * width if kind == "slit" else np.inf)
        signed = signed + _yarn_ends(rng, u, cloth.period, reach) + _yarn_ends(rng, v, cloth.period, reach)
    inside = np.clip(np.float32(0.5) - signed, 0, 1)
    rim_width = max(rng.uniform(1, 4) * s, 1.0) * (3 if kind == "burnt" else 1)
    rim = np.clip(1 - signed / np.float32(rim_width), 0, 1) * (1 - inside)
    if kind == "burnt":
        rim_layer = _blend(rim * np.float32(0.85), np.array([0.22, 0.14, 0.07], np.float32))
    else:
        rim_layer = _shade(1 + np.float32(rng.choice([-0.35, 0.35])) * rim[..., None])
    gain, offset = _stack(rim_layer, _blend(inside, _contrasting(rng, cloth)))
    phrase = f"{_size_word(size, cloth)} {kind} hole"
    return _Patch(cx - half_w, cy - half_h, np.maximum(inside, rim), gain, offset, phrase)


def _paint_stain(rng: np.random.Generator, cloth: RandomCloth, cx: int, cy: int) -> _Patch:
    s = cloth.scale
    kind = str(rng.choice(["blob", "streak", "spatter"], p=[0.6, 0.2, 0.2]))
    radius = rng.uniform(6, 64) * s
    stretch = rng.uniform(2, 4) if kind == "streak" else 1.0
    phi = rng.uniform(0, np.pi)
    half = int(np.ceil(radius * 2.2 * stretch)) + 2
    yy, xx = _grid(half, half)
    cos, sin = np.float32(np.cos(phi)), np.float32(np.sin(phi))
    a, b = (xx * cos + yy * sin) / np.float32(stretch), yy * cos - xx * sin
    if kind == "spatter":
        coverage = np.zeros(np.broadcast(a, b).shape, np.float32)
        for _ in range(rng.integers(4, 16)):
            bx, by = rng.normal(0, 0.6 * radius, 2)
            drop = max(rng.uniform(1.5, 6) * s, 1.0)
            coverage = np.maximum(coverage, np.clip(np.float32(drop + 0.5) - np.hypot(a - np.float32(bx), b - np.float32(by)), 0, 1))
    else:
        field = np.zeros(np.broadcast(a, b).shape, np.float32)
        for _ in range(rng.integers(3, 8)):
            bx, by = rng.normal(0, 0.45 * radius, 2)
            blob = np.float32(rng.uniform(0.35, 0.7) * radius)
            field += np.exp(-((a - np.float32(bx)) ** 2 + (b - np.float32(by)) ** 2) / (2 * blob**2))
        coverage = np.clip((field - np.float32(0.6)) / np.float32(rng.uniform(0.1, 0.5)), 0, 1)
    opacity = rng.uniform(0.15, 0.9)  # any contrast
    alpha = coverage * np.float32(opacity)
    tone = str(rng.choice(["oily", "rust", "ink", "dye", "bleach", "water"]))
    if cloth.luminance < 0.3 and tone in ("oily", "rust", "ink", "dye"):
        tone = "bleach" if rng.random() < 0.5 else "water"  # a darkening stain hardly shows on dark cloth
    if tone in ("oily", "rust", "ink", "dye"):
        tint = np.array(_TINTS[tone], np.float32) if tone in _TINTS else random_colour(rng)
        gain, offset = _shade(1 - alpha[..., None] * (1 - tint))
    elif tone == "bleach":
        gain, offset = _blend(alpha, np.float32(0.3) * cloth.mean_rgb + np.float32(0.7) * np.array([0.93, 0.92, 0.88], np.float32))
    else:  # water: pale, with a darker tide line where it dried
        tide = 4 * coverage * (1 - coverage)
        gain, offset = _stack(
            _blend(alpha * np.float32(0.6), np.array([0.86, 0.84, 0.79], np.float32)), _shade(1 - np.float32(0.3) * tide[..., None])
        )
    faint = "faint " if opacity < 0.35 else ""
    shape = {"blob": "", "streak": "streaked ", "spatter": "spattered "}[kind]
    return _Patch(cx - half, cy - half, alpha, gain, offset, f"{_size_word(2 * radius * stretch, cloth)} {faint}{shape}{tone} stain")


def _paint_broken_yarn(rng: np.random.Generator, cloth: RandomCloth, cx: int, cy: int) -> _Patch:
    s, side = cloth.scale, cloth.image.shape[0]
    kind = str(rng.choice(["missing", "raised", "loose", "frayed"], p=[0.4, 0.25, 0.15, 0.2]))
    length = rng.uniform(0.12, 0.8) * side
    course = rng.random()
    heading, where = (
        (cloth.angle + np.pi / 2, " along the warp") if course < 0.4 else (cloth.angle, " along the weft") if course < 0.8
        else (rng.uniform(0, np.pi), " at an angle")
    )  # fmt: skip
    thick = rng.random() < 0.4
    width = max((rng.uniform(2.5, 7) if thick else rng.uniform(1, 2.5)) * s, 0.9)
    t = np.linspace(-0.5, 0.5, 24)
    sway = rng.uniform(2, 8) * s if kind == "loose" else rng.uniform(0, 1.5) * s
    bend = sway * np.sin(np.pi * (t + 0.5) * rng.uniform(1, 3) + rng.uniform(0, 2 * np.pi))
    points = np.stack(
        [t * length * np.cos(heading) - bend * np.sin(heading), t * length * np.sin(heading) + bend * np.cos(heading)], axis=1
    )
    half_w, half_h = _window(points, width + 8 * s + 4)
    yy, xx = _grid(half_w, half_h)
    distance, along = _polyline_distance(xx, yy, points)
    taper = np.clip(np.minimum(along, 1 - along) * np.float32(length / max(3 * s, 1.0)), 0, 1)
    line = np.clip(np.float32(width / 2 + 0.5) - distance, 0, 1) * taper
    if kind in ("missing", "frayed"):
        layers = _blend(line * np.float32(0.9), _contrasting(rng, cloth))
    else:  # a thick or loose yarn lying on the cloth, casting a shadow beside it
        lighter = cloth.luminance < 0.35 or rng.random() < 0.6
        colour = np.clip(cloth.yarn_rgb * 1.3 + 0.12, 0, 1) if lighter else cloth.yarn_rgb * np.float32(0.5)
        shift = np.float32(width / 2 + 1)
        shadow_distance, _ = _polyline_distance(xx - shift, yy - shift, points)
        shadow = np.clip(np.float32(width / 2 + 0.5) - shadow_distance, 0, 1) * taper * (1 - line)
        layers = _stack(_shade(1 - np.float32(0.45) * shadow[..., None]), _blend(line * np.float32(0.95), colour.astype(np.float32)))
        line = np.maximum(line, shadow * np.float32(0.5))
    if kind == "frayed":
        end = points[-1] if rng.random() < 0.5 else points[0]
        tuft = np.zeros_like(line)
        for _ in range(3):
            dx, dy = rng.normal(0, 1.5 * s, 2)
            d = np.hypot(xx - np.float32(end[0] + dx), yy - np.float32(end[1] + dy))
            tuft = np.maximum(tuft, np.clip(np.float32(max(rng.uniform(2, 4) * s, 1.5)) - d + 1, 0, 1))
        fluff = cloth.yarn_rgb * 0.45 if cloth.luminance < 0.35 else np.clip(cloth.yarn_rgb * 1.35 + 0.1, 0, 1)
        layers = _stack(layers, _blend(tuft * np.float32(0.9), fluff.astype(np.float32)))
        line = np.maximum(line, tuft)
    gain, offset = layers
    size_word, thickness = "long" if length >= 0.4 * side else "short", "thick" if thick else "thin"
    detail = "" if kind == "missing" else f"{kind} "
    return _Patch(cx - half_w, cy - half_h, line, gain, offset, f"{size_word} {thickness} {detail}broken yarn{where}")


def _knot_beads(rng: np.random.Generator, cloth: RandomCloth) -> tuple[str, list[tuple[float, float, float, float, float]]]:
    """A knot's form and its lumps as (x, y, long radius, short radius, angle) about the knot's centre.

    Real knots are tangles of yarn: one lump, a heap of several, or neps strung along a yarn. In the
    Roboflow photographs (../shared/real_fabric) knot boxes are 0.09-0.32 of the image side (median
    0.14); single lumps of 3-12 px at 512 are 0.01-0.05, so clumps reach further (up to about 0.2).
    """
    s = cloth.scale
    form = str(rng.choice(["slub", "lump", "clump"], p=[0.3, 0.25, 0.45]))
    if form == "slub":  # a thick place along one yarn
        a, b = max(rng.uniform(6, 22) * s, 3.0), max(rng.uniform(1.5, 4.5) * s, 1.2)
        return form, [(0.0, 0.0, a, b, cloth.angle + (np.pi / 2 if rng.random() < 0.5 else 0.0))]
    if form == "lump":
        a = max(rng.uniform(3, 12) * s, 1.5)
        return form, [(0.0, 0.0, a, a * rng.uniform(0.6, 1.0), rng.uniform(0, np.pi))]
    count = int(rng.integers(2, 8))
    radii = np.maximum(rng.uniform(3, 14, count) * s, 1.5)
    if rng.random() < 0.5:  # heaped
        centres = rng.normal(0, 0.8 * radii.mean(), (count, 2))
    else:  # strung along a yarn
        phi = cloth.angle + (np.pi / 2 if rng.random() < 0.5 else 0.0)
        along = np.cumsum(radii * rng.uniform(0.8, 1.8, count))
        along -= along.mean()
        centres = np.stack([along * np.cos(phi), along * np.sin(phi)], 1) + rng.normal(0, 0.25 * radii.mean(), (count, 2))
    return form, [(float(x), float(y), float(r), float(r * rng.uniform(0.7, 1.0)), rng.uniform(0, np.pi))
                  for (x, y), r in zip(centres, radii)]  # fmt: skip


def _paint_knot(rng: np.random.Generator, cloth: RandomCloth, cx: int, cy: int) -> _Patch:
    s = cloth.scale
    form, beads = _knot_beads(rng, cloth)
    reach = max(max(abs(x), abs(y)) + a for x, y, a, _, _ in beads)
    half = int(np.ceil(reach * 1.3 + 4 * s + 3))
    yy, xx = _grid(half, half)
    # A tangle's outline is fibrous, not a smooth ellipse: its radius wobbles around the centre.
    rough = np.ones((2 * half + 1, 2 * half + 1), np.float32)
    if form == "clump":
        theta = np.arctan2(yy, xx)
        for k in range(3, 9):
            rough += np.float32(rng.uniform(0, 0.3) / k) * np.cos(k * theta + np.float32(rng.uniform(0, 2 * np.pi)))
    height = np.zeros_like(rough)
    lump = np.zeros_like(rough)
    for x, y, a, b, phi in beads:
        cos, sin = np.float32(np.cos(phi)), np.float32(np.sin(phi))
        dx, dy = xx - np.float32(x), yy - np.float32(y)
        radial = np.hypot((dx * cos + dy * sin) / np.float32(a), (dy * cos - dx * sin) / np.float32(b)) / rough
        height = np.maximum(height, np.float32(b) * np.sqrt(np.clip(1 - radial**2, 0, 1)))
        lump = np.maximum(lump, np.clip(1 - (radial - 1) * np.float32(b), 0, 1))
    slope_y, slope_x = np.gradient(height)
    light = rng.uniform(0, 2 * np.pi)  # lit from any side
    sun = np.array([0.6 * np.cos(light), 0.6 * np.sin(light), 0.53], np.float32)
    facing = np.clip((-slope_x * sun[0] - slope_y * sun[1] + sun[2]) / np.sqrt(slope_x**2 + slope_y**2 + 1), 0, 1)
    lump = lump.astype(np.float32)
    tone = str(rng.choice(["light", "dark", "foreign", "self"], p=[0.3, 0.25, 0.2, 0.25]))
    if tone == "dark" and cloth.luminance < 0.35:
        tone = "light"
    if tone == "light":
        base = cloth.mean_rgb + (1 - cloth.mean_rgb) * np.float32(rng.uniform(0.25, 0.55))
    elif tone == "dark":
        base = cloth.mean_rgb * np.float32(rng.uniform(0.4, 0.65))
    elif tone == "self":  # the cloth's own yarn, raised: it shows by its light and shadow
        base = np.clip(cloth.mean_rgb * np.float32(rng.uniform(1.0, 1.2)), 0, 1)
    else:
        base = random_colour(rng)
    surface = base * (0.4 + 0.8 * facing)[..., None] + (0.2 * facing**4)[..., None]
    drop = max(0.5 * max(b for _, _, _, b, _ in beads), 1.0)
    shift = np.float32([[1, 0, -sun[0] / 0.6 * drop], [0, 1, -sun[1] / 0.6 * drop]])
    shadow = cv2.warpAffine(lump, shift, lump.shape[::-1]) * (1 - lump)
    gain, offset = _stack(_shade(1 - np.float32(0.5) * shadow[..., None]), _blend(lump, np.clip(surface, 0, 1).astype(np.float32)))
    words = "" if tone in ("foreign", "self") else f"{tone} "
    if form == "slub":
        phrase = f"{words}slub knot"
    elif tone == "foreign":
        phrase = f"{_size_word(2 * reach, cloth)} {'tangled ' if form == 'clump' else ''}knot of foreign fibre"
    else:
        phrase = f"{_size_word(2 * reach, cloth)} {'tangled ' if form == 'clump' else ''}{words}knot"
    return _Patch(cx - half, cy - half, np.maximum(lump, shadow), gain, offset, phrase)


def _paint_wrinkle(rng: np.random.Generator, cloth: RandomCloth, cx: int, cy: int) -> _Patch:
    s, side = cloth.scale, cloth.image.shape[0]
    crease = rng.random() < 0.3
    length = rng.uniform(0.3, 1.0) * side
    angle = rng.uniform(0, np.pi)
    sigma = np.float32(max((rng.uniform(1, 2.5) if crease else rng.uniform(3, 14)) * s, 0.8))
    sag = np.float32(rng.uniform(-0.15, 0.15) * length)
    cos, sin = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    reach = abs(float(sag)) + 4 * float(sigma)
    half_w = int(np.ceil(abs(cos) * length / 2 + abs(sin) * reach))
    half_h = int(np.ceil(abs(sin) * length / 2 + abs(cos) * reach))
    yy, xx = _grid(half_w, half_h)
    t = (xx * cos + yy * sin) / np.float32(length / 2)
    envelope = np.sqrt(np.clip(1 - t * t, 0, 1))
    d = (yy * cos - xx * sin) - sag * (1 - t * t)
    lit = np.exp(-((d - sigma) ** 2) / (2 * sigma**2))
    dark = np.exp(-((d + sigma) ** 2) / (2 * sigma**2))
    relief = envelope * (lit - dark) * np.float32(rng.choice([-1.0, 1.0]))
    gain = 1 + np.float32(rng.uniform(0.3, 0.65)) * relief[..., None]
    offset = np.float32(rng.uniform(0.05, 0.2)) * np.maximum(relief, 0)[..., None]
    size_word = "long" if length >= 0.6 * side else "short"
    phrase = f"{size_word} {'sharp creased' if crease else 'soft'} wrinkle"
    return _Patch(cx - half_w, cy - half_h, envelope * np.maximum(lit, dark), gain, offset, phrase)


PAINTERS: dict[str, Callable[[np.random.Generator, RandomCloth, int, int], _Patch]] = {
    "hole": _paint_hole,
    "stain": _paint_stain,
    "broken_yarn": _paint_broken_yarn,
    "wrinkle": _paint_wrinkle,
    "knot": _paint_knot,
}

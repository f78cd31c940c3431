"""Where the cloth is in a line-scan strip, so the blank margins beside it are never inspected.

A line-scan camera is wider than the web: a 4096 px line sees the cloth and, at one or both ends,
the machine (an unlit gap, a backlit slot, a roller). Asked about a tile of that, the model still
answers (the shipped base flags clean strips as often as defective ones), so tiled scoring finds the
cloth first, skips the tiles wholly outside it and drops the boxes lying mostly outside it
(``score.mask_margins``, applied in :func:`inspect_core.inference.tiling.plan_tiles`).

What a margin is, and the finder's rule: a margin is the same machine part seen line after line, so
along the web (the strip's short axis, time) it changes by sensor noise and light flicker only, while
cloth changes with every yarn. The texture of a column is the standard deviation of grey over
``WINDOW`` consecutive lines, averaged over the strip; per-column sensor gain (PRNU), which gives a
blank margin a texture *across* the line, cancels out of it. A margin runs in from an end of the
strip while its columns stay as flat as that end and at its brightness; it counts only when that end
is clearly flatter than the cloth (``CONTRAST``). Scanning in from the ends, a hole or a flat stain in
the cloth never splits it.

Measured on the randomised generator's line-scan strips (``generate_sample(11, i, size=256,
style="randomised", width=W)``, i < 40 at W 2048 and i < 10 at 4096; written independently of this
finder, with its margins recorded): margin columns 0.2-4.7 grey levels of texture (backlit slots
with shot noise and JPEG the highest), cloth medians 0.3-40 per strip; where the cloth stands out at
all, its margin reached at most 0.6 of it, hence ``CONTRAST``. 47 of 50 masked, the found edges 0-6 px
outside the recorded ones (82 % within 3 px, none inside: JPEG blocks blur the step outward); 3 left
whole (a cloth as flat as its margin, one clipped to white). Strips of real cloth (256-row bands of
the real photos side by side between a black gap and a lit roller, JPEG 80): 23 of 23 masked, edges
0-6 px outside. The slow test ``test_the_finder_on_the_randomised_generators_line_scan_strips`` keeps
the first 20.

Only strips are masked (sides ``STRIP_ASPECT``:1 or more). Area-camera photos are not: on the real
photos (``../shared/real_fabric``) an overexposed or vignetted edge of the cloth is as flat as a margin
(hsst ``2024_9_11_14_6_58_36_1152_128``: its right 40 px measure 0.6-1.4 grey levels, with a stain in them).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from inspect_core.data.annotations import Box

STRIP_ASPECT = 3.0  # a line-scan strip: as the Try page decides to tile (inspect_app.try_page.LINE_SCAN_ASPECT)
WINDOW = 7  # lines of the along-the-web standard deviation
SMOOTH = 5  # columns of the running median over both profiles: one hot sensor column or dust speck does not end a margin
END = 16  # columns at each end that tell that end's texture and brightness
CONTRAST = 0.6  # an end is a margin only when its texture is at most this share of the cloth's (75th percentile of columns)
LEVEL_TOLERANCE = 0.15  # ...and a margin column's brightness within this share of the end's (at least LEVEL_FLOOR grey levels)
LEVEL_FLOOR = 10.0
HOLDS = 0.5  # a box is on the cloth when at least this share of its area is


@dataclass(frozen=True, slots=True)
class ClothRegion:
    """The cloth's bounding rectangle ``(x0, y0, x1, y1)`` in image pixels (x1, y1 exclusive)."""

    x0: int
    y0: int
    x1: int
    y1: int

    def share_inside(self, box: Box) -> float:
        """The share of ``box``'s area that lies on the cloth (for a degenerate box: 1.0 when its corner is on it)."""
        w = min(box[2], self.x1) - max(box[0], self.x0)
        h = min(box[3], self.y1) - max(box[1], self.y0)
        area = (box[2] - box[0]) * (box[3] - box[1])
        if area <= 0:
            return 1.0 if self.x0 <= box[0] <= self.x1 and self.y0 <= box[1] <= self.y1 else 0.0
        return max(0.0, w) * max(0.0, h) / area

    def holds(self, box: Box, share: float = HOLDS) -> bool:
        """Whether ``box`` lies mostly on the cloth: boxes mostly in the margin are the model answering about nothing."""
        return self.share_inside(box) >= share

    def touches(self, window: tuple[int, int, int, int]) -> bool:
        """Whether the window shares any pixel with the cloth: a window that does not is never sent to the model."""
        return min(window[2], self.x1) > max(window[0], self.x0) and min(window[3], self.y1) > max(window[1], self.y0)


def line_profiles(grey: np.ndarray, window: int = WINDOW) -> tuple[np.ndarray, np.ndarray]:
    """Per column of a strip whose lines are its rows: (texture along the web, median brightness), running-median smoothed."""
    grey = grey.astype(np.float32)
    mean = cv2.blur(grey, (1, window), borderType=cv2.BORDER_REFLECT)
    mean_sq = cv2.blur(grey * grey, (1, window), borderType=cv2.BORDER_REFLECT)
    texture = np.sqrt(np.maximum(mean_sq - mean * mean, 0.0)).mean(axis=0)
    return _running_median(texture), _running_median(np.median(grey, axis=0))


def _running_median(profile: np.ndarray, size: int = SMOOTH) -> np.ndarray:
    if len(profile) < size:
        return profile
    padded = np.pad(profile, size // 2, mode="edge")
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, size), axis=1)


def margin_width(texture: np.ndarray, level: np.ndarray, cloth_texture: float) -> int:
    """Columns of blank margin at the start of the profiles: 0 when that end is not clearly flatter than the cloth."""
    end_texture, end_level = float(np.median(texture[:END])), float(np.median(level[:END]))
    if end_texture > CONTRAST * cloth_texture:
        return 0
    limit = np.sqrt(max(end_texture, 0.1) * cloth_texture)  # halfway, on a log scale, from the end's flatness to the cloth's
    blank = (texture <= limit) & (np.abs(level - end_level) <= max(LEVEL_FLOOR, LEVEL_TOLERANCE * end_level))
    first_cloth = np.flatnonzero(~blank)
    width = int(first_cloth[0]) if len(first_cloth) else len(texture)
    return width if width >= END // 2 else 0  # a few flat columns at the very end are a dark selvage, not a margin


def find_cloth(pixels: np.ndarray) -> ClothRegion:
    """The cloth's rectangle in an RGB (or grey) line-scan strip; the whole image for anything else or when unsure.

    Margins are at the ends of the line (left and right of a wide strip, top and bottom of a tall
    one); every line of the strip keeps all its lines of the web. The whole image is returned for
    an area-camera frame, a strip whose ends are not clearly flatter than its middle (a blank strip
    between two rolls, a cloth too smooth to tell from the roller), or one with less than ``END``
    columns of cloth left: masking only removes what is clearly not cloth.
    """
    height, width = pixels.shape[:2]
    whole = ClothRegion(0, 0, width, height)
    if max(width, height) < STRIP_ASPECT * min(width, height):
        return whole
    grey = pixels if pixels.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(pixels[..., :3]), cv2.COLOR_RGB2GRAY)
    lines = grey if width >= height else grey.T  # rows are lines: the web runs down them
    texture, level = line_profiles(lines)
    cloth_texture = float(np.percentile(texture, 75))
    start = margin_width(texture, level, cloth_texture)
    stop = len(texture) - margin_width(texture[::-1], level[::-1], cloth_texture)
    if stop - start < END:
        return whole
    return ClothRegion(start, 0, stop, height) if width >= height else ClothRegion(0, start, width, stop)

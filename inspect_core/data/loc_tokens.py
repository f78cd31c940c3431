"""Florence-2 location tokens: ``<loc_0>``..``<loc_999>``, one per box coordinate.

Encoding normalises by the image size, multiplies by 1000, rounds and clips to 0-999; decoding
maps a token back to pixels (``q / 1000 * size``), the exact inverse of the rounding step.
"""

from __future__ import annotations

import re

from inspect_core.data.annotations import Box

LOC_BINS = 1000
_LOC = re.compile(r"<loc_(\d+)>")


def quantise(value: float, size: int) -> int:
    """Pixel coordinate -> loc bin."""
    return min(max(int(round(value / size * LOC_BINS)), 0), LOC_BINS - 1)


def dequantise(bin_index: int, size: int) -> float:
    """Loc bin -> pixel coordinate."""
    if not 0 <= bin_index < LOC_BINS:
        raise ValueError(f"loc value {bin_index} is outside 0-{LOC_BINS - 1}")
    return bin_index / LOC_BINS * size


def encode_box(box: Box, width: int, height: int) -> str:
    """Pixel box -> four loc tokens (x1, y1, x2, y2)."""
    x1, y1, x2, y2 = box
    bins = (quantise(x1, width), quantise(y1, height), quantise(x2, width), quantise(y2, height))
    return "".join(f"<loc_{b}>" for b in bins)


def decode_box(bins: tuple[int, int, int, int] | list[int], width: int, height: int) -> Box:
    """Four loc bins -> pixel box."""
    x1, y1, x2, y2 = bins
    return (dequantise(x1, width), dequantise(y1, height), dequantise(x2, width), dequantise(y2, height))


def parse_loc_values(text: str) -> list[int]:
    """All loc bin numbers in ``text``, in order (values are not range-checked here)."""
    return [int(m) for m in _LOC.findall(text)]

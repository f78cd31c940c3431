"""Shared test helpers: small labelled images written on the fly, and the real fabric samples."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

REAL_FABRIC = Path(__file__).resolve().parents[1].parent / "shared" / "real_fabric"


def write_image(path: Path, width: int = 64, height: int = 48, seed: int = 0, rects: list[tuple[int, int, int, int]] = ()) -> Path:
    """A noisy grey image (unique per seed) with bright rectangles drawn at the given pixel boxes."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(60, 120, size=(height, width, 3), dtype=np.uint8)
    for x1, y1, x2, y2 in rects:
        pixels[y1:y2, x1:x2] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if path.suffix.lower() in (".jpg", ".jpeg") else []
    assert cv2.imwrite(str(path), pixels, params)
    return path


@pytest.fixture
def real_fabric() -> Path:
    if not REAL_FABRIC.is_dir():
        pytest.skip("../shared/real_fabric is not present on this machine")
    return REAL_FABRIC

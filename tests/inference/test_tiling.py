import numpy as np
import pytest

from inspect_core.errors import UsageError
from inspect_core.inference.tiling import MAX_TILES_PER_IMAGE, capped_tile, tile_windows


def covered(width: int, height: int, windows: list[tuple[int, int, int, int]]) -> bool:
    mask = np.zeros((height, width), bool)
    for x0, y0, x1, y1 in windows:
        mask[y0:y1, x0:x1] = True
    return bool(mask.all())


@pytest.mark.parametrize(("width", "height", "tile"), [(1024, 128, 128), (4096, 4096, 512), (300, 200, 64), (50, 40, 128)])
def test_ordinary_images_keep_their_tile_size(width: int, height: int, tile: int) -> None:
    windows = tile_windows(width, height, tile, 0.2)
    assert windows == tile_windows(width, height, tile, 0.2, max_tiles=10**9)
    assert len(windows) <= MAX_TILES_PER_IMAGE and covered(width, height, windows)


@pytest.mark.parametrize(
    ("width", "height", "tile", "cap"), [(8000, 16, 16, 100), (16, 8000, 16, 100), (3000, 3000, 32, 100), (999, 7, 1, 5)]
)
def test_extreme_images_get_the_smallest_coarser_tile_that_fits_the_cap(width: int, height: int, tile: int, cap: int) -> None:
    windows = tile_windows(width, height, tile, 0.2, max_tiles=cap)
    side = capped_tile(width, height, tile, 0.2, cap)
    assert side > tile and len(windows) <= cap and covered(width, height, windows)
    assert len(tile_windows(width, height, side - 1, 0.2, max_tiles=10**9)) > cap  # one pixel less would not fit


def test_a_cap_below_one_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="max tiles"):
        tile_windows(100, 100, 10, 0.2, max_tiles=0)

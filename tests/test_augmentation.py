import numpy as np
import pytest

from inspect_core.annotations import DefectObject
from inspect_core.augmentation import OFFLINE_FLIPS, OnlineAugmenter, apply, compose, extra_transform


def _canvas(box: tuple[int, int, int, int], width: int = 120, height: int = 80) -> np.ndarray:
    image = np.zeros((height, width, 3), dtype=np.uint8)
    x1, y1, x2, y2 = box
    image[y1:y2, x1:x2] = 255
    return image


def _locate(image: np.ndarray) -> tuple[float, float, float, float]:
    ys, xs = np.nonzero(image[..., 0] > 127)
    return (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))


@pytest.mark.parametrize("flip", sorted(OFFLINE_FLIPS))
def test_boxes_and_polygons_follow_the_pixels(flip: str) -> None:
    box = (10, 5, 37, 29)
    polygon = ((10.0, 5.0), (37.0, 5.0), (37.0, 29.0), (10.0, 29.0))
    obj = DefectObject("hole", tuple(float(v) for v in box), polygon=polygon, description="small hole")
    flipped, (moved,) = apply(compose([OFFLINE_FLIPS[flip](p=1.0)]), _canvas(box), (obj,))
    located = _locate(flipped)
    assert moved.box == pytest.approx(located, abs=1e-3)
    xs, ys = [p[0] for p in moved.polygon], [p[1] for p in moved.polygon]
    assert (min(xs), min(ys), max(xs), max(ys)) == pytest.approx(located, abs=1e-3)
    assert moved.label == "hole" and moved.description == "small hole"


def test_online_augmenter_is_random_but_always_consistent() -> None:
    box = (70, 10, 100, 30)
    obj = DefectObject("stain", tuple(float(v) for v in box))
    augment = OnlineAugmenter(seed=3)
    seen = set()
    for _ in range(16):
        image, (moved,) = augment(_canvas(box), (obj,))
        assert moved.box == pytest.approx(_locate(image), abs=1e-3)
        seen.add(tuple(round(v) for v in moved.box))
    assert len(seen) == 4  # identity, horizontal, vertical, both


def test_extra_transforms_keep_boxes_on_pixels() -> None:
    box = (40, 20, 80, 60)
    obj = DefectObject("knot", tuple(float(v) for v in box))
    augment = OnlineAugmenter(horizontal_flip=False, vertical_flip=False, extra=[extra_transform("RandomRotate90", {"p": 1.0})], seed=0)
    image, (moved,) = augment(_canvas(box, 100, 100), (obj,))
    assert moved.box == pytest.approx(_locate(image), abs=1e-3)


def test_boxes_pushed_out_of_the_image_are_dropped() -> None:
    obj = DefectObject("hole", (0.0, 0.0, 10.0, 10.0))
    crop = compose([extra_transform("Crop", {"x_min": 50, "y_min": 40, "x_max": 120, "y_max": 80})])
    image, objects = apply(crop, _canvas((0, 0, 10, 10)), (obj,))
    assert image.shape[:2] == (40, 70) and objects == ()


def test_unknown_transform_is_named() -> None:
    with pytest.raises(ValueError, match="RandomFlipz"):
        extra_transform("RandomFlipz", {})

from pathlib import Path

import numpy as np
import pytest

from inspect_core.data.annotations import AnnotatedImage, DefectObject
from inspect_core.data.augmentation import OFFLINE_FLIPS, OnlineAugmenter, apply, compose, extra_transform, mirror_text


def _canvas(box: tuple[int, int, int, int], width: int = 120, height: int = 80) -> np.ndarray:
    image = np.zeros((height, width, 3), dtype=np.uint8)
    x1, y1, x2, y2 = box
    image[y1:y2, x1:x2] = 255
    return image


def _annotated(pixels: np.ndarray, *objects: DefectObject, caption: str | None = None) -> AnnotatedImage:
    return AnnotatedImage(Path("x.jpg"), pixels.shape[1], pixels.shape[0], objects, caption=caption)


def _locate(image: np.ndarray) -> tuple[float, float, float, float]:
    ys, xs = np.nonzero(image[..., 0] > 127)
    return (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))


@pytest.mark.parametrize("flip", sorted(OFFLINE_FLIPS))
def test_boxes_and_polygons_follow_the_pixels(flip: str) -> None:
    """Draw a known rectangle, flip, locate it in the pixels, compare with the moved labels."""
    box = (10, 5, 37, 29)
    polygon = ((10.0, 5.0), (37.0, 5.0), (37.0, 29.0), (10.0, 29.0))
    obj = DefectObject("hole", tuple(float(v) for v in box), polygon=polygon, description="small hole")
    pixels = _canvas(box)
    flipped, moved_image = apply(compose([OFFLINE_FLIPS[flip](p=1.0)]), pixels, _annotated(pixels, obj))
    (moved,) = moved_image.objects
    located = _locate(flipped)
    assert moved.box == pytest.approx(located, abs=1e-3)
    xs, ys = [p[0] for p in moved.polygon], [p[1] for p in moved.polygon]
    assert (min(xs), min(ys), max(xs), max(ys)) == pytest.approx(located, abs=1e-3)
    assert moved.label == "hole" and moved.description == "small hole"


def test_position_words_follow_a_flip() -> None:
    obj = DefectObject("hole", (1.0, 1.0, 9.0, 9.0), description="small hole near the left selvage in the upper half")
    pixels = _canvas((1, 1, 9, 9))
    annotated = _annotated(pixels, obj, caption="Left side: small hole near the left selvage in the upper half.")
    _, flipped = apply(compose([OFFLINE_FLIPS["h"](p=1.0)]), pixels, annotated)
    assert flipped.objects[0].description == "small hole near the right selvage in the upper half"
    assert flipped.caption == "Right side: small hole near the right selvage in the upper half."
    _, flipped = apply(compose([OFFLINE_FLIPS["v"](p=1.0)]), pixels, annotated)
    assert flipped.objects[0].description == "small hole near the left selvage in the lower half"
    assert mirror_text("the bottom edge, topology", "VerticalFlip") == "the top edge, topology"
    assert mirror_text("left", "GaussNoise") == "left"


def test_online_augmenter_is_random_but_always_consistent() -> None:
    box = (70, 10, 100, 30)
    pixels = _canvas(box)
    annotated = _annotated(pixels, DefectObject("stain", tuple(float(v) for v in box)))
    augment = OnlineAugmenter(seed=3)
    seen = set()
    for _ in range(16):
        image, moved = augment(pixels, annotated)
        assert moved.objects[0].box == pytest.approx(_locate(image), abs=1e-3)
        seen.add(tuple(round(v) for v in moved.objects[0].box))
    assert len(seen) == 4  # identity, horizontal, vertical, both


def test_extra_transforms_keep_boxes_on_pixels() -> None:
    box = (40, 20, 80, 60)
    pixels = _canvas(box, 100, 100)
    augment = OnlineAugmenter(horizontal_flip=False, vertical_flip=False, extra=[extra_transform("RandomRotate90", {"p": 1.0})], seed=0)
    image, moved = augment(pixels, _annotated(pixels, DefectObject("knot", tuple(float(v) for v in box))))
    assert moved.objects[0].box == pytest.approx(_locate(image), abs=1e-3)


def test_crops_drop_boxes_that_leave_and_update_the_size() -> None:
    pixels = _canvas((0, 0, 10, 10))
    crop = compose([extra_transform("Crop", {"x_min": 50, "y_min": 40, "x_max": 120, "y_max": 80})])
    image, moved = apply(crop, pixels, _annotated(pixels, DefectObject("hole", (0.0, 0.0, 10.0, 10.0))))
    assert image.shape[:2] == (40, 70) and moved.objects == () and (moved.width, moved.height) == (70, 40)


def test_unknown_transform_is_named() -> None:
    with pytest.raises(ValueError, match="RandomFlipz"):
        extra_transform("RandomFlipz", {})

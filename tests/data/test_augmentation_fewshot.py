"""The few-shot augmentations keep boxes on their pixels: each moved label is checked against the box found
by thresholding the transformed image (an oracle that knows nothing of the transform's arithmetic)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from inspect_core.config import AugmentSection
from inspect_core.data.annotations import AnnotatedImage, DefectObject
from inspect_core.data.augmentation import (
    OnlineAugmenter,
    PasteSource,
    box_safe_crop,
    copy_paste,
    paste_sources,
    rotate_text,
    zoom,
)
from inspect_core.training.data import augmenter_from_config


def _canvas(width: int, height: int, *boxes: tuple[int, int, int, int]) -> np.ndarray:
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    for x1, y1, x2, y2 in boxes:
        pixels[y1:y2, x1:x2] = 255
    return pixels


def _image(pixels: np.ndarray, *boxes: tuple[int, int, int, int], path: str = "target.png", **fields) -> AnnotatedImage:
    objects = tuple(DefectObject("hole", tuple(float(v) for v in box), **fields) for box in boxes)
    return AnnotatedImage(Path(path), pixels.shape[1], pixels.shape[0], objects)


def _found(pixels: np.ndarray) -> list[tuple[float, float, float, float]]:
    """Boxes of the bright blobs, by thresholding and connected components (continuous coordinates)."""
    mask = (pixels.max(axis=2) > 127).astype(np.uint8)
    count, _labels, stats, _centroids = cv2.connectedComponentsWithStats(mask, connectivity=4)
    return sorted((float(x), float(y), float(x + w), float(y + h)) for x, y, w, h, _area in stats[1:count])


def _labelled(image: AnnotatedImage) -> list[tuple[float, ...]]:
    return sorted(o.box for o in image.objects)


def _same(found: list, labelled: list, tolerance: float) -> bool:
    return len(found) == len(labelled) and all(np.allclose(f, b, atol=tolerance) for f, b in zip(found, labelled))


def test_rotation_by_quarter_turns_moves_boxes_exactly() -> None:
    box = (10, 5, 37, 29)
    pixels = _canvas(120, 80, box)
    augment = OnlineAugmenter(horizontal_flip=False, vertical_flip=False, rotate90=True, seed=4)
    shapes = set()
    for _ in range(16):
        out, moved = augment(pixels, _image(pixels, box))
        assert _same(_found(out), _labelled(moved), 1e-3)
        assert (moved.width, moved.height) == (out.shape[1], out.shape[0])
        shapes.add(out.shape[:2])
    assert shapes == {(80, 120), (120, 80)}


def test_rotation_turns_position_words() -> None:
    pixels = _canvas(100, 100, (0, 0, 20, 10))
    obj_text = "hole near the left selvage in the upper half"
    augment = OnlineAugmenter(horizontal_flip=False, vertical_flip=False, rotate90=True, seed=0)
    for _ in range(8):
        out, moved = augment(pixels, _image(pixels, (0, 0, 20, 10), description=obj_text))
        x1, y1, _x2, _y2 = _found(out)[0]
        where = {(0.0, 0.0): obj_text, (0.0, 80.0): "hole near the bottom selvage in the left half",
                 (80.0, 90.0): "hole near the right selvage in the lower half",
                 (90.0, 0.0): "hole near the top selvage in the right half"}  # fmt: skip
        assert moved.objects[0].description == where[(x1, y1)]
    assert rotate_text("Upper left corner", 2) == "Lower right corner"


@pytest.mark.parametrize("seed", range(6))
def test_box_safe_crop_keeps_every_box_whole_and_on_its_pixels(seed: int) -> None:
    boxes = [(20, 30, 50, 45), (100, 10, 130, 70)]
    pixels = _canvas(200, 100, *boxes)
    out, moved = box_safe_crop(pixels, _image(pixels, *boxes), np.random.default_rng(seed), min_side=0.3)
    assert _same(_found(out), _labelled(moved), 1e-6)
    assert [b[2] - b[0] for b in _labelled(moved)] == [30, 30] and (moved.width, moved.height) == (out.shape[1], out.shape[0])
    assert out.shape[1] >= 110  # the window spans both boxes


@pytest.mark.parametrize("seed", range(8))
def test_zoom_in_and_out_moves_boxes_with_the_pixels(seed: int) -> None:
    box = (60, 40, 100, 64)
    pixels = _canvas(160, 120, box)
    out, moved = zoom(pixels, _image(pixels, box), np.random.default_rng(seed), amount=0.4)
    assert out.shape == pixels.shape
    assert _same(_found(out), _labelled(moved), 1.0)  # bilinear edges: within a pixel


def test_zoom_out_pads_with_the_mean_colour_not_a_mirror() -> None:
    box = (0, 0, 40, 40)
    pixels = _canvas(100, 100, box)
    for seed in range(20):
        out, moved = zoom(pixels, _image(pixels, box), np.random.default_rng(seed), amount=0.5)
        assert len(_found(out)) == 1 and _same(_found(out), _labelled(moved), 1.0)  # no reflected, unlabelled copy


def test_copy_paste_puts_labelled_defects_where_the_pixels_are(tmp_path: Path) -> None:
    source_path = tmp_path / "source.png"
    cv2.imwrite(str(source_path), _canvas(90, 90, (30, 40, 52, 50)))
    source = AnnotatedImage(source_path, 90, 90, (DefectObject("stain", (30.0, 40.0, 52.0, 50.0)),))
    sources = paste_sources([source, source])  # an image listed twice (one per task record) gives its defects once
    assert sources == [PasteSource(source_path, "stain", (30.0, 40.0, 52.0, 50.0))]
    target_box = (5, 5, 20, 25)
    pixels = _canvas(160, 120, target_box)
    for seed in range(10):
        out, moved = copy_paste(pixels, _image(pixels, target_box), sources, np.random.default_rng(seed), most=3)
        assert len(moved.objects) >= 2 and moved.objects[0].box == (5.0, 5.0, 20.0, 25.0)
        assert {o.label for o in moved.objects[1:]} == {"stain"}
        assert _same(_found(out), _labelled(moved), 1e-6)
        sizes = sorted((b[2] - b[0]) * (b[3] - b[1]) for b in _labelled(moved)[1:] if b != (5.0, 5.0, 20.0, 25.0))
        assert set(sizes) == {220.0}  # 22 x 10, turned or not
    _out, alone = copy_paste(pixels, _image(pixels, target_box, path=str(source_path)), sources, np.random.default_rng(0), most=3)
    assert len(alone.objects) == 1  # an image is never pasted into itself


def test_everything_at_once_from_the_recipe(tmp_path: Path) -> None:
    source_path = tmp_path / "source.png"
    cv2.imwrite(str(source_path), _canvas(64, 64, (10, 20, 30, 34)))
    sources = paste_sources([AnnotatedImage(source_path, 64, 64, (DefectObject("knot", (10.0, 20.0, 30.0, 34.0)),))])
    section = AugmentSection(rotate90=True, color_jitter=0.2, crop=0.3, scale=0.3, copy_paste=1.0, copy_paste_max=2)
    boxes = [(20, 20, 44, 40), (90, 60, 110, 100)]
    pixels = _canvas(128, 112, *boxes)
    for epoch in range(12):
        augment = augmenter_from_config(section, seed=epoch, paste_from=sources)
        out, moved = augment(pixels, _image(pixels, *boxes), "od")
        assert _same(_found(out), _labelled(moved), 1.0), epoch
        assert len(moved.objects) >= 3
        out, moved = augment(pixels, _image(pixels, *boxes), "grounding")
        assert len(moved.objects) == 2  # grounding records get nothing pasted: their caption would not name it
    names = [type(t).__name__ for t in augment.pipeline.transforms]
    assert names == ["HorizontalFlip", "VerticalFlip", "RandomRotate90", "ColorJitter"]

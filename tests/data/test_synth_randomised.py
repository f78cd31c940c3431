"""The randomised style: deterministic, labels that match what was drawn, every class, layouts, line-scan margins."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from inspect_core.data.annotations import check_box
from inspect_core.data.synthetic_fabric import DEFECT_CLASSES, SyntheticSample, generate_sample
from tests.data.synth_oracle import BoxCheck, check_boxes

SEED = 23
SIZE = 256
BATCH = 40
TOLERANCE = 16  # px at 256: blur, JPEG blocks and faint edges move what shows a little past the label
LEVEL = 12  # 0-255: a pixel "changed" by at least this much


@pytest.fixture(scope="module")
def batch() -> list[SyntheticSample]:
    return [generate_sample(SEED, index, SIZE, style="randomised") for index in range(BATCH)]


def test_same_arguments_give_the_same_sample_and_another_style_another_image() -> None:
    first = generate_sample(4, 2, 128, style="randomised")
    generate_sample(4, 3, 128, style="randomised")
    again = generate_sample(4, 2, 128, style="randomised")
    assert np.array_equal(first.image, again.image) and first.objects == again.objects and first.caption == again.caption
    assert not np.array_equal(first.image, generate_sample(4, 2, 128).image)


def test_batch_covers_every_class_many_structures_and_all_layouts(batch: list[SyntheticSample]) -> None:
    assert {o.label for s in batch for o in s.objects} == set(DEFECT_CLASSES)
    assert len({s.texture for s in batch}) >= 6
    assert {s.layout for s in batch} == {"full", "background", "linescan"}
    assert any(not s.objects for s in batch) and any(len(s.objects) >= 3 for s in batch)


def test_labels_are_valid_and_described(batch: list[SyntheticSample]) -> None:
    for sample in batch:
        assert sample.image.shape == (SIZE, SIZE, 3) and sample.image.dtype == np.uint8
        assert sample.caption.endswith(".")
        for obj in sample.objects:
            assert check_box(obj.box, SIZE, SIZE, "randomised", obj.label) == obj.box
            assert f"a {obj.description}" in sample.caption
            if obj.label == "broken_yarn":
                assert min(obj.box[2] - obj.box[0], obj.box[3] - obj.box[1]) >= 0.03 * SIZE - 1e-9
            if obj.polygon is not None:
                assert all(obj.box[0] <= x <= obj.box[2] and obj.box[1] <= y <= obj.box[3] for x, y in obj.polygon)


def test_boxes_match_the_pixels_that_changed(batch: list[SyntheticSample]) -> None:
    """Independent of the generator's own masks: the same image without defects, and what differs."""
    result = BoxCheck()
    for index, sample in enumerate(batch):
        clean = generate_sample(SEED, index, SIZE, max_defects=0, style="randomised")
        assert clean.objects == () and clean.layout == sample.layout
        check_boxes(sample.image, clean.image, sample.objects, TOLERANCE, LEVEL, f"image {index}", result)
    assert not result.problems, "\n".join(result.problems)
    labels = {label for label, _iou in result.checked}
    assert labels == set(DEFECT_CLASSES) and len(result.checked) >= 30
    assert statistics.median(iou for _label, iou in result.checked) >= 0.7


def test_knots_reach_the_sizes_real_knots_have_and_come_as_tangles() -> None:
    """Real knots (Roboflow photographs in ../shared/real_fabric) have boxes 0.09-0.32 of the image side;
    lumps of 3-12 px at 512 alone stay under 0.05. Sizes are measured on the changed pixels, not the labels."""
    sizes, tangled = [], 0
    for index in range(150):
        sample = generate_sample(SEED + 1, index, SIZE, style="randomised")
        knots = [o for o in sample.objects if o.label == "knot"]
        if not knots:
            continue
        clean = generate_sample(SEED + 1, index, SIZE, max_defects=0, style="randomised")
        changed = np.abs(sample.image.astype(np.int16) - clean.image.astype(np.int16)).max(axis=2) >= LEVEL
        for knot in knots:
            x0, y0, x1, y1 = (int(v) for v in knot.box)
            rows, cols = np.nonzero(changed[y0 : y1 + 1, x0 : x1 + 1])
            if rows.size:
                sizes.append(np.sqrt((np.ptp(rows) + 1) * (np.ptp(cols) + 1)) / SIZE)
            tangled += "tangled" in knot.description
    assert len(sizes) >= 25
    assert max(sizes) >= 0.09 and sum(size >= 0.06 for size in sizes) >= len(sizes) // 5, sorted(sizes)
    assert tangled >= len(sizes) // 4


def _flat_margin(grey: np.ndarray, columns: slice) -> None:
    margin = grey[:, columns]
    assert margin.shape[1] > 0
    assert margin.std(axis=0).max() <= 10, "a margin column has texture"
    # Across the margin only the light's fall-off and per-column sensor gain (1.5 %) vary, never cloth texture.
    assert np.median(np.abs(np.diff(margin.mean(axis=0)))) <= 8, "the margin is not blank across its columns"


def test_line_scan_strips_have_blank_margins_and_no_boxes_in_them() -> None:
    width, height, found = 1024, 128, 0
    for index in range(6):
        strip = generate_sample(SEED, index, height, style="randomised", width=width)
        assert strip.image.shape == (height, width, 3) and strip.layout == "linescan"
        left, right = strip.margins
        assert left >= 0.02 * width - 1 and right >= 0.02 * width - 1
        grey = strip.image.astype(np.float32).mean(axis=2)
        _flat_margin(grey, slice(0, left - 4))  # a few columns from the cloth edge may carry its blur
        _flat_margin(grey, slice(width - right + 4, width))
        for obj in strip.objects:
            assert left - 0.5 <= obj.box[0] and obj.box[2] <= width - right + 0.5, (index, obj)
            found += 1
    assert found >= 6


def test_square_line_scan_tiles_keep_labels_off_their_margins(batch: list[SyntheticSample]) -> None:
    tiles = [s for s in batch if s.layout == "linescan"]
    assert tiles
    for tile in tiles:
        left, right = tile.margins
        assert left + right >= 0.1 * SIZE - 1
        for obj in tile.objects:
            assert left - 0.5 <= obj.box[0] and obj.box[2] <= SIZE - right + 0.5


@pytest.mark.parametrize("kwargs", [{"style": "woven"}, {"width": 512}, {"style": "randomised", "width": 100}])
def test_bad_style_options_are_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        generate_sample(0, 0, 128, **kwargs)

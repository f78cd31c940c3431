"""Synthetic fabric generator: determinism, exact and visible labels, captions, LabelImg VOC output."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from inspect_core.data.annotations import check_box
from inspect_core.data.synthetic_fabric import (
    DEFECT_CLASSES,
    LINE_MIN_THICKNESS_FRACTION,
    SyntheticSample,
    generate_sample,
    write_voc_dataset,
)

SEED = 11
SIZE = 256
BATCH = 40
# A defect is visible where enough of its box changed by at least this much (0-255) from the clean cloth.
VISIBLE_LEVELS = 40
OUTLINED = {"hole", "stain", "wrinkle"}


@pytest.fixture(scope="module")
def batch() -> list[SyntheticSample]:
    return [generate_sample(SEED, index, SIZE) for index in range(BATCH)]


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_same_seed_and_index_give_the_same_sample_whatever_was_generated_before() -> None:
    first = generate_sample(3, 7)
    generate_sample(3, 8)
    generate_sample(4, 7, size=128)
    again = generate_sample(3, 7)
    assert first.image.shape == (512, 512, 3) and first.image.dtype == np.uint8
    assert np.array_equal(first.image, again.image)
    assert (first.objects, first.caption, first.texture) == (again.objects, again.caption, again.texture)


def test_other_index_or_seed_gives_another_image() -> None:
    base = generate_sample(3, 7, SIZE).image
    assert not np.array_equal(base, generate_sample(3, 8, SIZE).image)
    assert not np.array_equal(base, generate_sample(4, 7, SIZE).image)


def test_batch_covers_every_class_textures_and_clean_images(batch: list[SyntheticSample]) -> None:
    labels = {obj.label for sample in batch for obj in sample.objects}
    counts = [len(sample.objects) for sample in batch]
    assert labels == set(DEFECT_CLASSES)
    assert {sample.texture for sample in batch} == {"plain", "twill", "knit"}
    assert 0 in counts and max(counts) <= 4 and sum(c >= 2 for c in counts) >= 5


def test_boxes_and_polygons_are_valid_and_do_not_overlap(batch: list[SyntheticSample]) -> None:
    for sample in batch:
        assert sample.image.shape == (SIZE, SIZE, 3)
        for obj in sample.objects:
            assert check_box(obj.box, SIZE, SIZE, "synthetic", obj.label) == obj.box  # inside, no clipping
            if obj.label in OUTLINED:
                assert obj.polygon is not None and len(obj.polygon) >= 3
                x1, y1, x2, y2 = obj.box
                assert all(x1 <= x <= x2 and y1 <= y <= y2 for x, y in obj.polygon)
            else:
                assert obj.polygon is None
        for i, a in enumerate(sample.objects):
            assert all(_iou(a.box, b.box) <= 0.1 for b in sample.objects[i + 1 :])


def test_broken_yarn_boxes_keep_the_minimum_thickness(batch: list[SyntheticSample]) -> None:
    yarns = [obj for sample in batch for obj in sample.objects if obj.label == "broken_yarn"]
    assert yarns
    for obj in yarns:
        width, height = obj.box[2] - obj.box[0], obj.box[3] - obj.box[1]
        assert min(width, height) >= LINE_MIN_THICKNESS_FRACTION * SIZE - 1e-9
        assert max(width, height) >= 0.2 * SIZE - 1  # long along the warp or weft


def test_descriptions_use_human_words_and_appear_in_the_caption(batch: list[SyntheticSample]) -> None:
    for sample in batch:
        texture_words = {"plain": "plain woven", "twill": "twill woven", "knit": "knitted"}[sample.texture]
        assert texture_words in sample.caption and sample.caption.endswith(".")
        if not sample.objects:
            assert sample.caption.startswith("clean ") and sample.caption.endswith("with no defects.")
        for obj in sample.objects:
            assert obj.description and f"a {obj.description}" in sample.caption
            assert obj.label.replace("_", " ") in obj.description and "_" not in obj.description


def test_defects_are_visible_and_confined_to_their_boxes(batch: list[SyntheticSample]) -> None:
    """max_defects=0 renders the same cloth, light and noise: the difference is exactly the defects."""
    for index, sample in enumerate(batch):
        if not sample.objects:
            continue
        clean = generate_sample(SEED, index, SIZE, max_defects=0)
        assert clean.objects == () and clean.texture == sample.texture
        diff = np.abs(sample.image.astype(np.int16) - clean.image.astype(np.int16)).max(axis=2)
        near_a_box = np.zeros(diff.shape, bool)
        for obj in sample.objects:
            x1, y1, x2, y2 = (int(round(v)) for v in obj.box)
            changed = diff[y1:y2, x1:x2] >= VISIBLE_LEVELS
            assert changed.mean() >= 0.02, (index, obj)
            near_a_box[max(y1 - 8, 0) : y2 + 8, max(x1 - 8, 0) : x2 + 8] = True
        # Only JPEG ringing and faint soft edges may reach past a label.
        assert diff[~near_a_box].max(initial=0) <= 32, index


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), index=st.integers(0, 10**6))
def test_any_seed_gives_valid_labels(seed: int, index: int) -> None:
    sample = generate_sample(seed, index, size=96)
    assert sample.image.shape == (96, 96, 3)
    assert len(sample.objects) <= 4
    for obj in sample.objects:
        assert obj.label in DEFECT_CLASSES
        assert check_box(obj.box, 96, 96, "synthetic", obj.label) == obj.box
        assert f"a {obj.description}" in sample.caption


def test_defect_count_options() -> None:
    for index in range(10):
        assert generate_sample(SEED, index, SIZE, clean_fraction=1.0).objects == ()
        assert generate_sample(SEED, index, SIZE, max_defects=0, clean_fraction=0.0).objects == ()
        assert 1 <= len(generate_sample(SEED, index, SIZE, max_defects=2, clean_fraction=0.0).objects) <= 2


@pytest.mark.parametrize("kwargs", [{"size": 16}, {"max_defects": -1}, {"clean_fraction": 1.5}])
def test_bad_arguments_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        generate_sample(0, 0, **kwargs)


def _text(element: etree._Element, path: str) -> str:
    found = element.find(path)
    assert found is not None, path
    return found.text or ""


def test_voc_dataset_is_labelimg_pascal_voc_with_captions(tmp_path: Path) -> None:
    out_dir = tmp_path / "voc"
    paths = write_voc_dataset(out_dir, count=4, seed=SEED, size=128, start_index=3)
    assert [p.name for p in paths] == [f"fabric_{i:05d}.xml" for i in range(3, 7)]
    total_objects = 0
    for index, path in zip(range(3, 7), paths):
        sample = generate_sample(SEED, index, 128)
        raw = path.read_bytes()
        assert b"\n\t<filename>" in raw  # pretty-printed with tabs, like LabelImg
        root = etree.fromstring(raw)
        image_name = f"fabric_{index:05d}.jpg"
        assert root.tag == "annotation"
        assert _text(root, "folder") == "voc"
        assert _text(root, "filename") == image_name and _text(root, "path") == image_name
        assert _text(root, "source/database") == "inspect-core synthetic"
        assert [_text(root, f"size/{tag}") for tag in ("width", "height", "depth")] == ["128", "128", "3"]
        assert _text(root, "segmented") == "0"
        assert _text(root, "caption") == sample.caption
        image = cv2.imread(str(out_dir / image_name))
        assert image is not None and image.shape == (128, 128, 3)
        elements = root.findall("object")
        assert len(elements) == len(sample.objects)
        total_objects += len(elements)
        for element, obj in zip(elements, sample.objects):
            assert _text(element, "name") == obj.label
            assert _text(element, "pose") == "Unspecified"
            assert _text(element, "truncated") in {"0", "1"} and _text(element, "difficult") == "0"
            assert _text(element, "description") == obj.description
            bounds = [int(_text(element, f"bndbox/{tag}")) for tag in ("xmin", "ymin", "xmax", "ymax")]
            xmin, ymin, xmax, ymax = bounds
            assert 0 <= xmin < xmax <= 128 and 0 <= ymin < ymax <= 128
            assert all(abs(v - b) <= 0.5 for v, b in zip(bounds, obj.box))
    assert total_objects > 0

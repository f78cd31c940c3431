"""Split shares from the command line, ``resplit`` over a source's split folders, and the small-split warnings (issue 15)."""

from __future__ import annotations

import json
from pathlib import Path

from inspect_core.config import AugmentSection, DatasetSection, SplitRatios
from inspect_core.data.annotations import AnnotatedImage, DefectObject
from inspect_core.data.dataset_builder import MIN_EVAL_IMAGES, assign_splits, build_dataset, split_warnings
from inspect_core.data.importers import import_dataset
from tests.data.test_dataset_builder import _voc_set


def _images(count: int, split: str | None = None, label: str = "hole") -> list[AnnotatedImage]:
    box = DefectObject(label, (1.0, 1.0, 5.0, 5.0))
    return [AnnotatedImage(Path(f"{split}_{i}.jpg"), 10, 10, (box,), split=split, source_key=f"{split}_{i}") for i in range(count)]


def test_source_splits_are_kept_unless_resplit() -> None:
    images = _images(18, "train") + _images(1, "valid") + _images(1, "test")  # a source whose test folder has one image
    kept = assign_splits(images, SplitRatios(train=0.5, valid=0.25, test=0.25), seed=0)
    assert [i.split for i in kept] == [i.split for i in images]
    redone = assign_splits(images, SplitRatios(train=0.5, valid=0.25, test=0.25), seed=0, resplit=True)
    counts = {s: sum(1 for i in redone if i.split == s) for s in ("train", "valid", "test")}
    assert counts == {"train": 10, "valid": 5, "test": 5}


def test_resplit_keeps_copies_of_one_source_image_together() -> None:
    images = [AnnotatedImage(Path(f"{split}/{i}.jpg"), 10, 10, split=split, source_key=f"frame{i}") for i in range(12) for split in
              ("train", "valid")]  # fmt: skip
    redone = assign_splits(images, SplitRatios(train=0.5, valid=0.25, test=0.25), seed=3, resplit=True)
    by_key: dict[str, set[str]] = {}
    for image in redone:
        by_key.setdefault(image.source_key, set()).add(image.split)
    assert all(len(splits) == 1 for splits in by_key.values())


def test_split_warnings_count_images_and_objects_per_class() -> None:
    images = _images(30, "train") + _images(MIN_EVAL_IMAGES, "valid") + _images(MIN_EVAL_IMAGES - 1, "test")
    images.append(AnnotatedImage(Path("t.jpg"), 10, 10, (DefectObject("stain", (1, 1, 4, 4)),), "train", "t"))  # stain: train only
    warnings = split_warnings(images)
    assert any(w.startswith(f"test has {MIN_EVAL_IMAGES - 1} source image(s)") for w in warnings)
    assert not any(w.startswith("valid has 10") for w in warnings)  # exactly the threshold is enough
    assert "valid has fewer than 3 objects of stain (0)" in " ".join(warnings) and "test has fewer than 3 objects of stain (0)" in " ".join(
        warnings
    )
    assert split_warnings(_images(30, "train") + _images(12, "valid") + _images(12, "test")) == []


def test_the_build_records_resplit_counts_and_warnings(tmp_path: Path) -> None:
    src = _voc_set(tmp_path / "src", 20)
    result = import_dataset(src)
    summary = build_dataset(
        result, tmp_path / "out", DatasetSection(splits=SplitRatios(train=0.5, valid=0.25, test=0.25)), AugmentSection()
    )
    assert {s: v.source_images for s, v in summary.splits.items()} == {"train": 10, "valid": 5, "test": 5}
    manifest = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert manifest["warnings"] == summary.warnings and any(w.startswith("valid has 5 source image(s)") for w in summary.warnings)

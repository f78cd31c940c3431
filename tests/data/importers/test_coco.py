import json
import shutil
from pathlib import Path

import pytest

from inspect_core.data.importers import DatasetImportError, import_dataset
from tests.conftest import write_image


def _coco(root: Path, images: list[dict], annotations: list[dict], split: str = "train") -> Path:
    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    categories = [
        {"id": 0, "name": "fabric-defects", "supercategory": "none"},  # Roboflow's parent category
        {"id": 1, "name": "hole", "supercategory": "fabric-defects"},
        {"id": 2, "name": "stain", "supercategory": "fabric-defects"},
    ]
    (folder / "_annotations.coco.json").write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return root


def _two_images(root: Path) -> list[dict]:
    write_image(root / "train/a.jpg", 100, 50, seed=1)
    write_image(root / "train/b.jpg", 100, 50, seed=2)
    return [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 50}, {"id": 2, "file_name": "b.jpg", "width": 100, "height": 50}]


def test_roboflow_coco_with_polygons(tmp_path: Path) -> None:
    annotations = [
        {"id": 10, "image_id": 1, "category_id": 1, "bbox": [10, 5, 20, 10], "segmentation": [[10, 5, 30, 5, 30, 15]]},
        {"id": 11, "image_id": 1, "category_id": 2, "bbox": [50, 20, 10, 10], "segmentation": []},
    ]
    result = import_dataset(_coco(tmp_path, _two_images(tmp_path), annotations))
    assert result.format == "coco" and result.classes == ["hole", "stain"]
    by_name = {i.image_path.name: i for i in result.images}
    hole, stain = by_name["a.jpg"].objects
    assert hole.box == (10, 5, 30, 15) and hole.polygon == ((10, 5), (30, 5), (30, 15))
    assert stain.box == (50, 20, 60, 30) and stain.polygon is None
    assert by_name["b.jpg"].objects == () and by_name["b.jpg"].split == "train"


@pytest.mark.parametrize(
    ("annotation", "field", "message"),
    [
        ({"category_id": 7, "bbox": [1, 1, 5, 5]}, "category_id", "unknown category id 7"),
        ({"category_id": 1, "bbox": [90, 1, 30, 5]}, "bbox", "outside the 100x50 image"),
        ({"category_id": 1, "bbox": [10, 10, 0, 5]}, "bbox", "zero or negative area"),
        ({"category_id": 1, "bbox": [10, 10, 5]}, "bbox", "expected [x, y, width, height]"),
    ],
)
def test_bad_annotations_are_named(tmp_path: Path, annotation: dict, field: str, message: str) -> None:
    _coco(tmp_path, _two_images(tmp_path), [{"id": 42, "image_id": 2, **annotation}])
    with pytest.raises(DatasetImportError) as info:
        import_dataset(tmp_path, "coco")
    (error,) = info.value.errors
    assert error.file.endswith("_annotations.coco.json")
    assert error.location == "annotations[0] (id=42)" and error.field == field and message in error.message


@pytest.mark.parametrize(
    ("file_name", "message"),
    [("../outside.jpg", "escapes the dataset root"), ("/etc/passwd", "absolute image path"), ("missing.jpg", "not found")],
)
def test_bad_image_references(tmp_path: Path, file_name: str, message: str) -> None:
    images = _two_images(tmp_path) + [{"id": 3, "file_name": file_name}]
    write_image(tmp_path / "outside.jpg", seed=9)
    _coco(tmp_path, images, [])
    result = import_dataset(tmp_path, "coco", skip_invalid=True)
    assert len(result.images) == 2
    (error,) = result.skipped
    assert error.location == "images[2] (id=3)" and error.field == "file_name" and message in error.message


def test_duplicate_and_unreadable_images(tmp_path: Path) -> None:
    images = _two_images(tmp_path)
    shutil.copy(tmp_path / "train/a.jpg", tmp_path / "train/copy.jpg")
    (tmp_path / "train/empty.jpg").write_bytes(b"")
    (tmp_path / "train/text.jpg").write_text("not an image")
    data = (tmp_path / "train/a.jpg").read_bytes()
    (tmp_path / "train/truncated.jpg").write_bytes(data[: len(data) // 2])
    names = ["copy.jpg", "empty.jpg", "text.jpg", "truncated.jpg"]
    images += [{"id": 3 + i, "file_name": n} for i, n in enumerate(names)]
    _coco(tmp_path, images, [])
    result = import_dataset(tmp_path, "coco", skip_invalid=True)
    assert sorted(i.image_path.name for i in result.images) == ["a.jpg", "b.jpg"]
    reasons = [e.message for e in result.skipped]
    assert "duplicate image" in reasons[0] and "a.jpg" in reasons[0]
    assert "empty file" in reasons[1]
    assert "cannot decode" in reasons[2] and "cannot decode" in reasons[3]

from collections import Counter
from pathlib import Path

import pytest

from inspect_core.data.importers import DatasetImportError, import_dataset
from tests.conftest import write_image


def _roboflow(root: Path) -> Path:
    (root / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\nnc: 2\nnames: ['hole', 'stain']\n")
    write_image(root / "train/images/a.jpg", 100, 50, seed=1)
    (root / "train/labels").mkdir(parents=True)
    (root / "train/labels/a.txt").write_text("0 0.5 0.5 0.2 0.4\n1 0.1 0.1 0.1 0.1")  # no final newline
    write_image(root / "valid/images/b.jpg", 100, 50, seed=2)  # no label file: a clean image
    return root


def test_real_roboflow_export_imports_completely(real_fabric: Path) -> None:
    result = import_dataset(real_fabric / "roboflow_fabric_yolo")
    assert result.format == "yolo" and result.classes == ["Hole", "Knot", "Stain"]
    assert len(result.images) == 22
    assert sum(len(i.objects) for i in result.images) == 29
    assert set(Counter(o.label for i in result.images for o in i.objects)) == {"Hole", "Knot", "Stain"}
    assert result.skipped == []


def test_roboflow_layout_keeps_splits_and_converts_boxes(tmp_path: Path) -> None:
    result = import_dataset(_roboflow(tmp_path))
    by_name = {i.image_path.name: i for i in result.images}
    assert by_name["a.jpg"].split == "train" and by_name["b.jpg"].split == "valid"
    assert by_name["b.jpg"].objects == ()
    hole, stain = by_name["a.jpg"].objects
    assert hole.label == "hole" and hole.box == pytest.approx((40, 15, 60, 35))
    assert stain.box == pytest.approx((5, 2.5, 15, 7.5))


def test_flat_pairs_and_polygons(tmp_path: Path) -> None:
    (tmp_path / "classes.txt").write_text("hole\n")
    write_image(tmp_path / "x.png", 100, 100)
    (tmp_path / "x.txt").write_text("0 0.1 0.1 0.3 0.1 0.2 0.4\n")
    (image,) = import_dataset(tmp_path, "yolo").images
    (obj,) = image.objects
    assert obj.box == pytest.approx((10, 10, 30, 40)) and len(obj.polygon) == 3


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        ("5 0.5 0.5 0.1 0.1", "class_id", "class id 5 is not in data.yaml"),
        ("x 0.5 0.5 0.1 0.1", "class_id", "not an integer"),
        ("0 0.95 0.5 0.3 0.1", "cx/cy/w/h", "outside the 100x50 image"),
        ("0 0.5 0.5 0.0 0.1", "width/height", "zero or negative size"),
        ("0 0.5 0.5 0.1", "row", "expected 'class cx cy w h'"),
        ("0 0.5 abc 0.1 0.1", "coordinates", "not a number"),
    ],
)
def test_bad_rows_name_file_line_and_field(tmp_path: Path, row: str, field: str, message: str) -> None:
    _roboflow(tmp_path)
    (tmp_path / "train/labels/a.txt").write_text(f"0 0.5 0.5 0.2 0.4\n{row}\n")
    with pytest.raises(DatasetImportError) as info:
        import_dataset(tmp_path)
    (error,) = info.value.errors
    assert error.file.endswith("train/labels/a.txt") and error.location == "line 2" and error.field == field
    assert message in error.message


def test_skip_invalid_keeps_the_good_images(tmp_path: Path) -> None:
    _roboflow(tmp_path)
    (tmp_path / "train/labels/a.txt").write_text("9 0.5 0.5 0.2 0.4\n")
    (tmp_path / "valid/labels").mkdir()
    (tmp_path / "valid/labels/orphan.txt").write_text("0 0.5 0.5 0.2 0.4\n")
    result = import_dataset(tmp_path, skip_invalid=True)
    assert [i.image_path.name for i in result.images] == ["b.jpg"]
    reasons = sorted(e.message for e in result.skipped)
    assert reasons == ["class id 9 is not in data.yaml (0..1)", "label file has no matching image"]


def test_missing_class_names_is_an_error(tmp_path: Path) -> None:
    write_image(tmp_path / "x.jpg")
    (tmp_path / "x.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(Exception, match="no data.yaml or classes.txt"):
        import_dataset(tmp_path, "yolo")

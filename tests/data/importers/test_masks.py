from pathlib import Path

import cv2
import numpy as np
import pytest

from inspect_core.data.importers import DatasetImportError, import_dataset
from tests.conftest import write_image


def test_real_stain_masks_give_boxes_and_polygons(real_fabric: Path) -> None:
    result = import_dataset(real_fabric / "hsst_stain_masks", mask_class="stain")
    assert result.format == "masks" and result.classes == ["stain"]
    assert len(result.images) == 26
    assert sum(1 for i in result.images if not i.objects) == 1  # the one empty mask
    objects = [o for i in result.images for o in i.objects]
    assert objects and all(o.label == "stain" and o.polygon and len(o.polygon) >= 3 for o in objects)
    for image in result.images:
        for obj in image.objects:
            xs, ys = [p[0] for p in obj.polygon], [p[1] for p in obj.polygon]
            x1, y1, x2, y2 = obj.box
            assert x1 <= min(xs) <= max(xs) <= x2 and y1 <= min(ys) <= max(ys) <= y2


def _mask_set(root: Path, mask: np.ndarray) -> Path:
    write_image(root / "images/a.jpg", mask.shape[1], mask.shape[0])
    (root / "masks").mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / "masks/a.png"), mask)
    return root


def test_each_region_becomes_an_object(tmp_path: Path) -> None:
    mask = np.zeros((50, 80), np.uint8)
    mask[5:15, 10:30] = 255
    mask[30:45, 60:70] = 255
    mask[0, 79] = 255  # a one-pixel speck is ignored
    (image,) = import_dataset(_mask_set(tmp_path, mask), mask_class="hole").images
    assert sorted(o.box for o in image.objects) == [(10, 5, 30, 15), (60, 30, 70, 45)]


def test_indexed_masks_map_values_through_classes_txt(tmp_path: Path) -> None:
    mask = np.zeros((50, 80), np.uint8)
    mask[5:15, 10:30] = 1
    mask[30:45, 60:70] = 2
    _mask_set(tmp_path, mask)
    (tmp_path / "classes.txt").write_text("hole\nstain\n")
    (image,) = import_dataset(tmp_path, "masks").images
    assert sorted((o.label, o.box) for o in image.objects) == [("hole", (10, 5, 30, 15)), ("stain", (60, 30, 70, 45))]


def test_mask_size_mismatch_is_named(tmp_path: Path) -> None:
    write_image(tmp_path / "images/a.jpg", 80, 50)
    (tmp_path / "masks").mkdir()
    cv2.imwrite(str(tmp_path / "masks/a.png"), np.zeros((40, 40), np.uint8))
    with pytest.raises(DatasetImportError) as info:
        import_dataset(tmp_path, "masks")
    (error,) = info.value.errors
    assert error.file.endswith("masks/a.png") and error.field == "size" and "40x40" in error.message

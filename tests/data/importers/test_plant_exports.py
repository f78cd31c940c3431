"""YOLO exports as plants have them (issue 15): 1-based ids, data.yaml kept elsewhere, linked split folders, empty sources."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspect_core.data.importers import DatasetImportError, detect_format, import_dataset
from inspect_core.errors import UsageError
from tests.conftest import write_image

DATA_YAML = "train: ../train/images\nval: ../valid/images\nnc: 2\nnames: ['cut', 'hole']\n"
# Per split, per image: the class ids of its rows. Ids 1 and 2 for names [cut, hole]: a 1-based export.
ONE_BASED = {"train": [[1], [2], [1, 2], [2, 2]], "valid": [[1]], "test": [[2]]}


def export(root: Path, layout: dict[str, list[list[int]]] = ONE_BASED, data_yaml: str | None = DATA_YAML) -> Path:
    """A Roboflow-style export: ``split/images/<split>_<n>.jpg`` + ``split/labels/<split>_<n>.txt``, data.yaml at the root."""
    seed = 0
    for split, images in layout.items():
        for index, ids in enumerate(images):
            seed += 1
            write_image(root / split / "images" / f"{split}_{index}.jpg", 40, 30, seed=seed)
            rows = "".join(f"{class_id} 0.{2 + row}5 0.5 0.1 0.2\n" for row, class_id in enumerate(ids))
            (root / split / "labels").mkdir(parents=True, exist_ok=True)
            (root / split / "labels" / f"{split}_{index}.txt").write_text(rows)
    if data_yaml is not None:
        (root / "data.yaml").write_text(data_yaml)
    return root


def labels(result) -> dict[str, list[str]]:
    return {image.image_path.name: [o.label for o in image.objects] for image in result.images}


def expected(layout: dict[str, list[list[int]]], names: dict[int, str]) -> dict[str, list[str]]:
    return {f"{split}_{i}.jpg": [names[c] for c in ids] for split, images in layout.items() for i, ids in enumerate(images)}


@pytest.mark.parametrize("skip_invalid", [False, True])
def test_a_one_based_export_fails_naming_the_class_map_that_fixes_it(tmp_path: Path, skip_invalid: bool) -> None:
    with pytest.raises(DatasetImportError) as info:
        import_dataset(export(tmp_path), skip_invalid=skip_invalid)  # --skip-invalid must not turn it into a mislabelled set
    message = str(info.value)
    assert "1-based" in message and "--class-map '1:cut,2:hole'" in message
    assert "data.yaml" in message and "labels/" in message  # names the names file and where id 2 is used


def test_a_map_of_names_only_does_not_hide_a_one_based_export(tmp_path: Path) -> None:
    with pytest.raises(DatasetImportError, match="1-based"):
        import_dataset(export(tmp_path), class_map="cut:cut,hole:hole")


def test_the_class_map_imports_the_one_based_export_correctly(tmp_path: Path) -> None:
    result = import_dataset(export(tmp_path), class_map="1:cut,2:hole")
    assert result.classes == ["cut", "hole"]
    assert labels(result) == expected(ONE_BASED, {1: "cut", 2: "hole"})
    assert {i.image_path.name: i.split for i in result.images}["valid_0.jpg"] == "valid"


def test_a_rare_id_0_is_still_one_based_and_the_map_refuses_it_naming_file_and_line(tmp_path: Path) -> None:
    layout = {"train": [[1, 1], [2], [1, 2], [2, 1], [1, 0]], "valid": [[2]]}  # one stray 0 among 9 rows
    root = export(tmp_path, layout)
    with pytest.raises(DatasetImportError, match="id 0 on 1 row"):
        import_dataset(root)
    with pytest.raises(DatasetImportError) as info:
        import_dataset(root, class_map="1:cut,2:hole")
    (error,) = info.value.errors
    assert error.file.endswith("train/labels/train_4.txt") and error.location == "line 2" and "not in the class map" in error.message
    skipped = import_dataset(root, class_map="1:cut,2:hole", skip_invalid=True)  # that image is left out, never relabelled
    assert "train_4.jpg" not in labels(skipped) and labels(skipped)["train_3.jpg"] == ["hole", "cut"]


def test_a_zero_based_export_with_one_typo_row_is_not_called_one_based(tmp_path: Path) -> None:
    layout = {"train": [[0, 1], [0], [1, 0], [0, 2]]}
    with pytest.raises(DatasetImportError) as info:
        import_dataset(export(tmp_path, layout))
    (error,) = info.value.errors
    assert error.location == "line 2" and "class id 2 is not in data.yaml (0..1)" in error.message


def test_a_zero_based_export_imports_as_before(tmp_path: Path) -> None:
    layout = {"train": [[0, 1], [1], [0]], "valid": [[1]]}
    assert labels(import_dataset(export(tmp_path, layout))) == expected(layout, {0: "cut", 1: "hole"})


def test_a_name_map_renames_yolo_classes_through_data_yaml(tmp_path: Path) -> None:
    layout = {"train": [[0, 1], [1]]}
    result = import_dataset(export(tmp_path, layout), class_map={"cut": "tear", "hole": "hole"})
    assert result.classes == ["tear", "hole"] and labels(result) == expected(layout, {0: "tear", 1: "hole"})


@pytest.mark.parametrize("place", ["config", "../config", ".."])
def test_data_yaml_is_found_beside_the_export(tmp_path: Path, place: str) -> None:
    root = export(tmp_path / "plant" / "export", {"train": [[0]], "valid": [[1]]}, data_yaml=None)
    (root / place).mkdir(parents=True, exist_ok=True)
    (root / place / "data.yaml").write_text(DATA_YAML)
    assert detect_format(root) == "yolo"
    assert labels(import_dataset(root)) == {"train_0.jpg": ["cut"], "valid_0.jpg": ["hole"]}


def test_data_yaml_places_are_searched_in_the_documented_order(tmp_path: Path) -> None:
    root = export(tmp_path / "plant" / "export", {"train": [[0]]}, data_yaml=None)
    for place, name in [("..", "parent"), ("../config", "sibling"), ("config", "own")]:
        (root / place).mkdir(parents=True, exist_ok=True)
        (root / place / "data.yaml").write_text(f"names: [{name}]\n")
        assert labels(import_dataset(root)) == {"train_0.jpg": [name]}  # each nearer place wins over the farther ones


def test_data_yaml_option(tmp_path: Path) -> None:
    root = export(tmp_path / "export", {"train": [[1]]}, data_yaml=None)
    names = tmp_path / "elsewhere" / "classes.yaml"
    names.parent.mkdir()
    names.write_text("names: [cut, hole]\n")
    assert labels(import_dataset(root, data_yaml=names)) == {"train_0.jpg": ["hole"]}
    with pytest.raises(FileNotFoundError, match="--data-yaml"):
        import_dataset(root, data_yaml=tmp_path / "missing.yaml")
    with pytest.raises(UsageError, match="--data-yaml"):
        import_dataset(root, "voc", data_yaml=names)


def test_linked_split_folders_import_and_keep_their_splits(tmp_path: Path) -> None:
    nas = export(tmp_path / "nas", {"train": [[0], [1]], "valid": [[1]], "test": [[0]]}, data_yaml=None)
    src = tmp_path / "src"
    src.mkdir()
    (src / "data.yaml").write_text(DATA_YAML)
    for split in ("train", "valid", "test"):
        os.symlink(nas / split, src / split)
    result = import_dataset(src)
    assert {i.image_path.name: i.split for i in result.images} == {
        "train_0.jpg": "train", "train_1.jpg": "train", "valid_0.jpg": "valid", "test_0.jpg": "test",
    }  # fmt: skip
    assert labels(result)["train_1.jpg"] == ["hole"]


def test_ultralytics_linked_images_and_labels_folders_import(tmp_path: Path) -> None:
    store = tmp_path / "store"
    write_image(store / "pics" / "a.jpg", 40, 30, seed=3)
    (store / "txt").mkdir()
    (store / "txt" / "a.txt").write_text("1 0.5 0.5 0.2 0.2\n")
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    (src / "labels").mkdir()
    os.symlink(store / "pics", src / "images" / "train")
    os.symlink(store / "txt", src / "labels" / "train")
    (src / "data.yaml").write_text(DATA_YAML)
    (image,) = import_dataset(src).images
    assert image.split == "train" and [o.label for o in image.objects] == ["hole"]


def test_a_file_link_out_of_a_linked_split_is_still_an_escape(tmp_path: Path) -> None:
    nas = export(tmp_path / "nas", {"train": [[0]]}, data_yaml=None)
    write_image(tmp_path / "private" / "secret.jpg", 40, 30, seed=9)
    os.symlink(tmp_path / "private" / "secret.jpg", nas / "train" / "images" / "s.jpg")
    src = tmp_path / "src"
    src.mkdir()
    (src / "data.yaml").write_text(DATA_YAML)
    os.symlink(nas / "train", src / "train")
    with pytest.raises(DatasetImportError, match="escapes the dataset root"):
        import_dataset(src)


def test_a_folder_link_that_is_not_a_split_may_not_lead_out(tmp_path: Path) -> None:
    src = export(tmp_path / "src", {"train": [[0]]})
    write_image(tmp_path / "elsewhere" / "x.jpg", 40, 30, seed=8)
    os.symlink(tmp_path / "elsewhere", src / "train" / "extra")
    with pytest.raises(DatasetImportError) as info:
        import_dataset(src)
    (error,) = info.value.errors
    assert error.file.endswith("train/extra") and "outside the dataset root" in error.message
    assert labels(import_dataset(src, skip_invalid=True)) == {"train_0.jpg": ["cut"]}


@pytest.mark.parametrize(("target", "message"), [("..", "holds the dataset itself"), ("missing", "not a folder")])
def test_a_split_link_to_the_dataset_itself_or_nowhere_is_refused(tmp_path: Path, target: str, message: str) -> None:
    src = export(tmp_path / "src", {"train": [[0]]})
    os.symlink(tmp_path / "src" / target if target != ".." else tmp_path, src / "valid")
    with pytest.raises(DatasetImportError, match=message):
        import_dataset(src)


def test_a_source_without_images_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "data.yaml").write_text(DATA_YAML)
    with pytest.raises(DatasetImportError, match="no image imported"):
        import_dataset(tmp_path)
    root = export(tmp_path / "bad", {"train": [[5]]})
    with pytest.raises(DatasetImportError, match="all 1 item"):
        import_dataset(root, skip_invalid=True)


def _linked_train(tmp_path: Path, files: dict[str, str]) -> Path:
    """``src/train`` linked to ``nas/train`` holding an image a.jpg and ``files``."""
    write_image(tmp_path / "nas" / "train" / "a.jpg", 40, 30, seed=4)
    for name, text in files.items():
        (tmp_path / "nas" / "train" / name).write_text(text)
    (tmp_path / "src").mkdir()
    os.symlink(tmp_path / "nas" / "train", tmp_path / "src" / "train")
    return tmp_path / "src"


BOX = "<bndbox><xmin>5</xmin><ymin>5</ymin><xmax>20</xmax><ymax>15</ymax></bndbox>"
LINKED = {
    "voc": {"a.xml": f"<annotation><filename>a.jpg</filename><object><name>hole</name>{BOX}</object></annotation>"},
    "coco": {"_annotations.coco.json": '{"images": [{"id": 1, "file_name": "a.jpg"}], "categories": [{"id": 1, "name": "hole"}], '
             '"annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 5, 15, 10]}]}'},
    "jsonl": {"annotations.jsonl": '{"image": "a.jpg", "prefix": "<OD>", "suffix": "hole<loc_125><loc_166><loc_500><loc_500>"}\n'},
}  # fmt: skip


@pytest.mark.parametrize("fmt", sorted(LINKED))
def test_every_format_follows_a_linked_split_folder(tmp_path: Path, fmt: str) -> None:
    result = import_dataset(_linked_train(tmp_path, LINKED[fmt]))
    assert result.format == fmt
    (image,) = result.images
    assert image.split == "train" and [o.label for o in image.objects] == ["hole"]


def test_masks_follow_linked_images_and_masks_folders(tmp_path: Path) -> None:
    write_image(tmp_path / "share" / "pics" / "a.jpg", 40, 30, seed=5)
    pixels = np.zeros((30, 40), np.uint8)
    pixels[5:15, 5:20] = 255
    (tmp_path / "share" / "m").mkdir()
    cv2.imwrite(str(tmp_path / "share" / "m" / "a.png"), pixels)
    (tmp_path / "src").mkdir()
    os.symlink(tmp_path / "share" / "pics", tmp_path / "src" / "images")
    os.symlink(tmp_path / "share" / "m", tmp_path / "src" / "masks")
    (image,) = import_dataset(tmp_path / "src", mask_class="stain").images
    assert [o.label for o in image.objects] == ["stain"] and image.objects[0].box == (5.0, 5.0, 20.0, 15.0)

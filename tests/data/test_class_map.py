"""``--class-map`` / ``dataset.class_map``: parsed the same from the option, a file and the recipe; applied by every importer."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspect_core.config import ConfigError, load_recipe
from inspect_core.data.importers import DatasetImportError, import_dataset, parse_class_map
from inspect_core.errors import UsageError
from tests.conftest import write_image


def test_inline_map_keeps_order_and_strips_spaces() -> None:
    parsed = parse_class_map(" 1: cut , 2:hole,3:cut ")
    assert parsed.mapping == {"1": "cut", "2": "hole", "3": "cut"}
    assert parsed.classes == ["cut", "hole"]  # several source labels may become one class, listed once


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("cut", "no such file"),
        ("1:cut,hole", "'hole' is not id:name"),
        ("1:cut,1:hole", "1 is given twice"),
        ("1:<loc_5>", "token markup"),
        ("1:", "is empty"),
        (",", "no such file"),
    ],
)
def test_bad_inline_maps_are_usage_errors(spec: str, fragment: str) -> None:
    with pytest.raises(UsageError, match="--class-map") as info:
        parse_class_map(spec)
    assert fragment in str(info.value)


def test_a_yaml_file_of_id_name_lines(tmp_path: Path) -> None:
    path = tmp_path / "map.yaml"
    path.write_text("# plant 3 export\n1: cut\n2: hole\nHole: hole\n")
    parsed = parse_class_map(str(path))
    assert parsed.mapping == {"1": "cut", "2": "hole", "Hole": "hole"} and parsed.origin == str(path)


def test_a_json_file(tmp_path: Path) -> None:
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"1": "cut", "2": "hole"}))
    assert parse_class_map(path).mapping == {"1": "cut", "2": "hole"}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("1: cut\n2: [hole]\n", "line 2: 2: expected a class name"), ("1: cut\n1: hole\n", "duplicate key"), ("- cut\n", "a mapping")],
)
def test_bad_map_files_name_the_file_and_line(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "map.yaml"
    path.write_text(text)
    with pytest.raises(UsageError) as info:
        parse_class_map(path)
    assert str(path) in str(info.value) and fragment in str(info.value)


def test_the_recipe_field_takes_a_mapping_with_integer_keys_an_inline_map_or_a_file(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("dataset:\n  class_map: {1: cut, 2: hole}\n")
    assert parse_class_map(load_recipe(recipe).dataset.class_map).mapping == {"1": "cut", "2": "hole"}
    assert load_recipe(None, ["dataset.class_map=1:cut,2:hole"]).dataset.class_map == "1:cut,2:hole"
    assert load_recipe(None, overrides={"dataset.class_map": "map.yaml"}).dataset.class_map == "map.yaml"
    with pytest.raises(ConfigError, match="dataset.class_map"):
        load_recipe(None, ["dataset.class_map=[cut, hole]"])


def _voc(root: Path, names: list[str]) -> Path:
    write_image(root / "a.jpg", 40, 30, seed=1)
    objects = "".join(
        f"<object><name>{n}</name><bndbox><xmin>{2 + 8 * i}</xmin><ymin>5</ymin><xmax>{8 + 8 * i}</xmax><ymax>15</ymax></bndbox></object>"
        for i, n in enumerate(names)
    )
    (root / "a.xml").write_text(f"<annotation><filename>a.jpg</filename>\n{objects}\n</annotation>")
    return root


def test_voc_names_are_renamed_and_an_unlisted_name_names_file_and_line(tmp_path: Path) -> None:
    root = _voc(tmp_path, ["Hole", "Tear", "Cut"])
    result = import_dataset(root, class_map="Hole:hole,Tear:cut,Cut:cut")
    assert [o.label for o in result.images[0].objects] == ["hole", "cut", "cut"] and result.classes == ["hole", "cut"]
    with pytest.raises(DatasetImportError) as info:
        import_dataset(root, class_map="Hole:hole,Tear:cut")
    (error,) = info.value.errors
    assert error.file.endswith("a.xml") and error.location == "line 2 <name>" and "'Cut' is not in the class map" in error.message


def test_coco_categories_map_by_id_or_name(tmp_path: Path) -> None:
    write_image(tmp_path / "a.jpg", 40, 30, seed=2)
    data = {
        "images": [{"id": 1, "file_name": "a.jpg"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [2, 2, 10, 10]},
                        {"id": 2, "image_id": 1, "category_id": 8, "bbox": [20, 2, 10, 10]}],
        "categories": [{"id": 7, "name": "Hole"}, {"id": 8, "name": "Stain"}],
    }  # fmt: skip
    (tmp_path / "c.json").write_text(json.dumps(data))
    result = import_dataset(tmp_path, class_map="7:hole,Stain:stain")
    assert [o.label for o in result.images[0].objects] == ["hole", "stain"]
    with pytest.raises(DatasetImportError) as info:
        import_dataset(tmp_path, class_map="7:hole")
    (error,) = info.value.errors
    assert error.location.startswith("annotations[1]") and "id 8 'Stain'" in error.message


def test_indexed_masks_map_by_value_or_name(tmp_path: Path) -> None:
    mask = np.zeros((30, 40), np.uint8)
    mask[2:10, 2:10], mask[15:25, 20:30] = 1, 2
    write_image(tmp_path / "images/a.jpg", 40, 30)
    (tmp_path / "masks").mkdir()
    cv2.imwrite(str(tmp_path / "masks/a.png"), mask)
    (tmp_path / "classes.txt").write_text("Hole\nStain\n")
    result = import_dataset(tmp_path, "masks", class_map="1:hole,Stain:stain")  # classes.txt alone would read as YOLO
    assert sorted(o.label for o in result.images[0].objects) == ["hole", "stain"]


def test_jsonl_targets_are_renamed(tmp_path: Path) -> None:
    write_image(tmp_path / "a.jpg", 40, 30)
    record = {"image": "a.jpg", "prefix": "<OD>", "suffix": "Hole<loc_100><loc_100><loc_500><loc_500>"}
    (tmp_path / "annotations.jsonl").write_text(json.dumps(record) + "\n")
    assert [o.label for o in import_dataset(tmp_path, class_map="Hole:hole").images[0].objects] == ["hole"]
    with pytest.raises(DatasetImportError, match="line 1"):
        import_dataset(tmp_path, class_map="Stain:stain")

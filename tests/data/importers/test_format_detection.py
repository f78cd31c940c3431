from pathlib import Path

import pytest

from inspect_core.data.importers import detect_format
from tests.conftest import write_image


def test_detects_each_format(tmp_path: Path) -> None:
    cases = {
        "jsonl": {"train/annotations.jsonl": ""},
        "yolo": {"data.yaml": "names: [a]"},
        "coco": {"_annotations.coco.json": '{"images": [], "annotations": [], "categories": []}'},
        "voc": {"a.xml": "<annotation><filename>a.jpg</filename></annotation>"},
    }
    for expected, files in cases.items():
        root = tmp_path / expected
        for name, text in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text)
        assert detect_format(root) == expected
    masks = tmp_path / "masks"
    write_image(masks / "images/a.jpg")
    write_image(masks / "masks/a.png")
    assert detect_format(masks) == "masks"


def test_real_sets_are_detected(real_fabric: Path) -> None:
    assert detect_format(real_fabric / "roboflow_fabric_yolo") == "yolo"
    assert detect_format(real_fabric / "hsst_stain_masks") == "masks"


def test_unknown_layout_says_what_it_looked_for(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot detect the label format.*pass --label-format"):
        detect_format(tmp_path)

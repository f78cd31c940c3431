import json
from pathlib import Path

import pytest

from inspect_core.data.importers import DatasetImportError, import_dataset
from tests.conftest import write_image

OD = "hole<loc_100><loc_100><loc_300><loc_300>stain<loc_500><loc_500><loc_600><loc_700>"
DENSE = "small hole<loc_100><loc_100><loc_300><loc_300>oily stain<loc_500><loc_500><loc_600><loc_700>"


def _write(root: Path, split: str, lines: list[str]) -> Path:
    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "annotations.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def _line(image: str, prefix: str, suffix: str) -> str:
    return json.dumps({"image": image, "prefix": prefix, "suffix": suffix})


def test_task_records_merge_into_one_annotation(tmp_path: Path) -> None:
    folder = _write(
        tmp_path,
        "train",
        [
            _line("a.jpg", "<OD>", OD),
            _line("a.jpg", "<DENSE_REGION_CAPTION>", DENSE),
            _line("a.jpg", "<CAPTION_TO_PHRASE_GROUNDING>fabric with small hole and oily stain", DENSE),
        ],
    )
    write_image(folder / "a.jpg", 200, 100)
    _write(tmp_path, "valid", [_line("b.jpg", "<OD>", "")])
    write_image(tmp_path / "valid/b.jpg", 200, 100, seed=3)
    result = import_dataset(tmp_path)
    assert result.format == "jsonl"
    a, b = sorted(result.images, key=lambda i: i.image_path.name)
    assert a.split == "train" and b.split == "valid" and b.objects == ()
    assert a.caption == "fabric with small hole and oily stain"
    assert [(o.label, o.description, o.box) for o in a.objects] == [
        ("hole", "small hole", (20.0, 10.0, 60.0, 30.0)),
        ("stain", "oily stain", (100.0, 50.0, 120.0, 70.0)),
    ]


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [
        ('{"image": "a.jpg", "prefix": "<OD>", ', "json", "malformed JSON"),
        (_line("a.jpg", "<OD>", "hole<loc_1><loc_2><loc_3><loc_1200>"), "suffix", "loc value 1200 > 999"),
        (_line("a.jpg", "<OD>", "hole<loc_1><loc_2>"), "suffix", "boxes need 4"),
        (_line("a.jpg", "<OD>", "hole with no box"), "suffix", "cannot parse"),
        (_line("a.jpg", "<OD>", "hole<loc_10><loc_10><loc_10><loc_20>"), "suffix", "zero or negative area"),
        (_line("a.jpg", "<CAPTION>", ""), "prefix", "unknown task prompt"),
        ('{"image": "a.jpg", "prefix": "<OD>"}', "suffix", "missing"),
        (_line("../a.jpg", "<OD>", ""), "image", "escapes the dataset root"),
        (_line("nope.jpg", "<OD>", ""), "image", "not found"),
    ],
)
def test_bad_lines_name_file_line_and_field(tmp_path: Path, line: str, field: str, message: str) -> None:
    folder = _write(tmp_path, "train", [_line("ok.jpg", "<OD>", OD), line])
    write_image(folder / "ok.jpg", seed=1)
    write_image(folder / "a.jpg", seed=2)
    with pytest.raises(DatasetImportError) as info:
        import_dataset(tmp_path, "jsonl")
    (error,) = info.value.errors
    assert error.file.endswith("train/annotations.jsonl") and error.location == "line 2"
    assert error.field == field and message in error.message
    result = import_dataset(tmp_path, "jsonl", skip_invalid=True)
    assert [i.image_path.name for i in result.images] == ["ok.jpg"]


def test_duplicate_records_and_images(tmp_path: Path) -> None:
    folder = _write(tmp_path, "train", [_line("a.jpg", "<OD>", ""), _line("a.jpg", "<OD>", OD), _line("b.jpg", "<OD>", "")])
    write_image(folder / "a.jpg", seed=1)
    write_image(folder / "b.jpg", seed=1)  # same pixels, same bytes
    result = import_dataset(tmp_path, skip_invalid=True)
    messages = [e.message for e in result.skipped]
    assert "duplicate od record for 'a.jpg' (first on line 1)" in messages[0]
    assert "duplicate image" in messages[1]
    assert [i.image_path.name for i in result.images] == ["a.jpg"]

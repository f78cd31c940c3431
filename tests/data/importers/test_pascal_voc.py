from pathlib import Path

import pytest

from inspect_core.data.importers import DatasetImportError, import_dataset
from tests.conftest import write_image

XML = """<annotation>
  <folder>x</folder>
  <filename>{filename}</filename>
  <path>/home/labeller/x/{filename}</path>
  <size><width>100</width><height>50</height><depth>3</depth></size>
  <caption>plain fabric with a small hole</caption>
  <object>
    <name>hole</name>
    <description>small hole</description>
    <bndbox><xmin>{xmin}</xmin><ymin>5</ymin><xmax>30</xmax><ymax>15</ymax></bndbox>
  </object>
</annotation>
"""


def _voc(root: Path, name: str = "a", filename: str = "a.jpg", xmin: str = "10") -> Path:
    write_image(root / f"{Path(filename).stem}.jpg", 100, 50, seed=hash(name) % 1000)
    (root / f"{name}.xml").write_text(XML.format(filename=filename, xmin=xmin))
    return root


def test_labelimg_xml_with_extensions(tmp_path: Path) -> None:
    (image,) = import_dataset(_voc(tmp_path)).images
    assert image.caption == "plain fabric with a small hole" and image.width == 100
    (obj,) = image.objects
    assert obj.label == "hole" and obj.box == (10, 5, 30, 15) and obj.description == "small hole"


def test_pascal_voc_folder_layout(tmp_path: Path) -> None:
    write_image(tmp_path / "JPEGImages/a.jpg", 100, 50)
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations/a.xml").write_text(XML.format(filename="a.jpg", xmin="10"))
    (image,) = import_dataset(tmp_path, "voc").images
    assert image.image_path == (tmp_path / "JPEGImages/a.jpg").resolve()


@pytest.mark.parametrize(
    ("xmin", "location", "field", "message"),
    [
        ("ten", "line 10 <xmin>", "xmin", "not a number"),
        ("-20", "line 10 <bndbox>", "bndbox", "outside the 100x50 image"),
        ("30", "line 10 <bndbox>", "bndbox", "zero or negative area"),
    ],
)
def test_bad_boxes_name_line_and_field(tmp_path: Path, xmin: str, location: str, field: str, message: str) -> None:
    _voc(tmp_path, xmin=xmin)
    with pytest.raises(DatasetImportError) as info:
        import_dataset(tmp_path, "voc")
    (error,) = info.value.errors
    assert error.file.endswith("a.xml") and error.location == location and error.field == field and message in error.message


def test_malformed_xml_and_escaping_paths_are_skipped_with_reasons(tmp_path: Path) -> None:
    _voc(tmp_path)
    (tmp_path / "broken.xml").write_text("<annotation>\n  <filename>b.jpg\n</annotation>\n")
    (tmp_path / "escape.xml").write_text(XML.format(filename="../secret.jpg", xmin="10"))
    result = import_dataset(tmp_path, "voc", skip_invalid=True)
    assert [i.image_path.name for i in result.images] == ["a.jpg"]
    by_file = {Path(e.file).name: e for e in result.skipped}
    assert by_file["broken.xml"].field == "xml" and by_file["broken.xml"].location == "line 3"
    assert "escapes the dataset root" in by_file["escape.xml"].message


def test_declared_size_must_match_the_image(tmp_path: Path) -> None:
    write_image(tmp_path / "a.jpg", 64, 64)
    (tmp_path / "a.xml").write_text(XML.format(filename="a.jpg", xmin="10"))
    with pytest.raises(DatasetImportError, match="declares 100x50 but a.jpg is 64x64"):
        import_dataset(tmp_path, "voc")

"""Hostile label folders through ``inspect-core dataset build``: every one is refused with a message naming the file
(and line or field) and the problem, or imported correctly; sources and an existing dataset are never touched (issue 12)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.hostile.build_helpers import IMAGE, Link, build, digest, existing_dataset, png_header_only, write_tree

hostile = pytest.mark.hostile_input

OBJ = "<object><name>{name}</name>{extra}<bndbox><xmin>{x1}</xmin><ymin>5</ymin><xmax>20</xmax><ymax>15</ymax></bndbox></object>"


def voc(name: str = "hole", filename: str = "a.jpg", x1: str = "5", extra: str = "", head: str = "", tail: str = "") -> str:
    return f"{head}<annotation><filename>{filename}</filename>{OBJ.format(name=name, extra=extra, x1=x1)}{tail}</annotation>"


def coco(images: object = None, annotations: object = None, categories: object = None) -> str:
    return json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg"}] if images is None else images,
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 5, 15, 10]}] if annotations is None else annotations,
        "categories": [{"id": 1, "name": "hole"}] if categories is None else categories,
    })


def jsonl(*records: dict | str) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


OD = {"image": "a.jpg", "prefix": "<OD>", "suffix": "hole<loc_125><loc_166><loc_500><loc_500>"}
XXE = '<?xml version="1.0"?><!DOCTYPE annotation [<!ENTITY xxe SYSTEM "file://{secret}">]>'
LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE annotation [<!ENTITY a "hahahahahahahahahaha">'
    + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9))
    + "]>"
)

# (label files under src/, besides an image a.jpg; expected exit code; fragments the message must contain)
REJECTED = [
    # --- Pascal VOC ---
    pytest.param({"a.xml": voc()[:-20]}, 3, ["a.xml", "line 1", "malformed XML"], id="voc-truncated"),
    pytest.param({"a.xml": b""}, 3, ["a.xml", "malformed XML"], id="voc-empty"),
    pytest.param({"a.xml": voc("tache br\u00fbl\u00e9e").encode("latin-1")}, 3,
                 ["a.xml", "line 1", "not valid UTF-8", "declare the encoding"],
                 id="voc-latin1-without-declaration"),
    pytest.param({"a.xml": voc(head='<?xml version="1.0" encoding="klingon"?>')}, 3, ["a.xml", "line 1"], id="voc-unknown-encoding"),
    pytest.param({"a.xml": voc(head='<?xml version="1.0" encoding="UTF-8"?>', name="br\u00fbl\u00e9").encode("latin-1")}, 3,
                 ["a.xml", "line 1", "malformed XML"], id="voc-latin1-declared-utf8"),
    pytest.param({"a.xml": voc("hole&lt;loc_5&gt;")}, 3, ["a.xml", "<name>", "field 'name'", "'<'", "token markup"],
                 id="voc-class-loc-token"),
    pytest.param({"a.xml": voc("&lt;/s&gt;")}, 3, ["a.xml", "field 'name'", "token markup"], id="voc-class-eos-token"),
    pytest.param({"a.xml": voc("ho&#10;le")}, 3, ["a.xml", "field 'name'", "U+000A"], id="voc-class-newline"),
    pytest.param({"a.xml": voc("ho&#9;le")}, 3, ["a.xml", "field 'name'", "U+0009"], id="voc-class-tab"),
    pytest.param({"a.xml": voc("ho\u2028le")}, 3, ["a.xml", "field 'name'", "U+2028"], id="voc-class-line-separator"),
    pytest.param({"a.xml": voc("hole&gt;")}, 3, ["a.xml", "field 'name'", "'>'"], id="voc-class-gt"),
    pytest.param({"a.xml": voc(extra="<description>a &lt;loc_1&gt; tear</description>")}, 3, ["a.xml", "field 'description'", "token"],
                 id="voc-description-token"),
    pytest.param({"a.xml": voc(tail="<caption>two\nlines</caption>")}, 3, ["a.xml", "field 'caption'", "U+000A"], id="voc-caption-newline"),
    pytest.param({"a.xml": voc(x1="nan")}, 3, ["a.xml", "<xmin>", "not a finite number"], id="voc-nan"),
    pytest.param({"a.xml": voc(x1="-inf")}, 3, ["a.xml", "<xmin>", "not a finite number"], id="voc-inf"),
    pytest.param({"a.xml": voc(x1="1e400")}, 3, ["a.xml", "<xmin>", "not a finite number"], id="voc-overflow"),
    pytest.param({"a.xml": voc(x1="0x10")}, 3, ["a.xml", "<xmin>", "not a number"], id="voc-hex"),
    pytest.param({"a.xml": voc(tail="<size><width>inf</width><height>30</height></size>")}, 3, ["a.xml", "<width>", "finite"],
                 id="voc-size-inf"),
    pytest.param({"a.xml": voc(tail="<size><width>41</width><height>30</height></size>")}, 3, ["a.xml", "<size>", "declares 41x30"],
                 id="voc-size-mismatch"),
    pytest.param({"a.xml": voc(filename="/etc/passwd")}, 3, ["a.xml", "<filename>", "absolute image path"], id="voc-absolute"),
    pytest.param({"a.xml": voc(filename="../outside/o.jpg")}, 3, ["a.xml", "<filename>", "escapes the dataset root"], id="voc-dotdot"),
    pytest.param({"a.xml": voc(filename="x" * 5000 + ".jpg")}, 3, ["a.xml", "<filename>"], id="voc-name-too-long"),
    pytest.param({"a.xml": voc(filename="l.jpg"), "l.jpg": Link("outside/o.jpg")}, 3, ["a.xml", "<filename>", "escapes the dataset root"],
                 id="voc-symlinked-image"),
    pytest.param({"a.xml": Link("outside/o.xml")}, 3, ["a.xml", "escapes the dataset root"], id="voc-symlinked-xml"),
    pytest.param({"a.xml": voc(name="&xxe;", head=XXE)}, 3, ["a.xml", "missing <name>"], id="voc-xxe-in-name"),
    pytest.param({"a.xml": voc(filename="&xxe;", head=XXE)}, 3, ["a.xml", "missing <filename>"], id="voc-xxe-in-filename"),
    pytest.param({"a.xml": voc(name="&j;", head=LAUGHS)}, 3, ["a.xml"], id="voc-billion-laughs"),
    pytest.param({"a.xml": voc(head='<!DOCTYPE annotation SYSTEM "http://203.0.113.1/evil.dtd">', name="&remote;")}, 3, ["a.xml"],
                 id="voc-remote-dtd"),
    pytest.param({"a.xml": "<annotation>" + "<a>" * 300 + "</a>" * 300 + "</annotation>"}, 3, ["a.xml"], id="voc-deep-nesting"),
    pytest.param({"a.xml": "<annotation><filename>a.jpg</filename><object><name>hole</name></object></annotation>"}, 3,
                 ["a.xml", "missing <bndbox>"], id="voc-no-bndbox"),
    pytest.param({"a.xml": voc(x1="30")}, 3, ["a.xml", "<bndbox>", "zero or negative area"], id="voc-inverted-box"),
    # --- COCO ---
    pytest.param({"c.json": coco(images=[{"id": [1], "file_name": "a.jpg"}], annotations=[])}, 3, ["c.json", "images[0]", "field 'id'"],
                 id="coco-image-id-list"),
    pytest.param({"c.json": coco(annotations=[{"id": 1, "image_id": [1], "category_id": 1, "bbox": [1, 1, 2, 2]}])}, 3,
                 ["c.json", "annotations[0]", "field 'image_id'", "[1]"], id="coco-annotation-image-id-list"),
    pytest.param({"c.json": coco(annotations=[{"id": 1, "image_id": {"a": 1}, "category_id": 1, "bbox": [1, 1, 2, 2]}])}, 3,
                 ["c.json", "field 'image_id'"], id="coco-image-id-object"),
    pytest.param({"c.json": coco(annotations=[{"id": 1, "image_id": 1, "category_id": [1], "bbox": [1, 1, 2, 2]}])}, 3,
                 ["c.json", "field 'category_id'", "unknown category id [1]"], id="coco-category-id-list"),
    pytest.param({"c.json": coco(categories=[{"id": [1], "name": "hole"}])}, 3, ["c.json", "categories[0]", "integer id"],
                 id="coco-cat-id-list"),
    pytest.param({"c.json": coco(categories=[{"id": True, "name": "hole"}])}, 3, ["c.json", "categories[0]", "integer id"],
                 id="coco-cat-id-bool"),
    pytest.param({"c.json": coco(categories=[{"id": 1, "name": "hole"}, {"id": 1, "name": "stain"}])}, 3,
                 ["c.json", "categories[1]", "used twice"], id="coco-cat-id-duplicate"),
    pytest.param({"c.json": coco(images=[{"id": 1, "file_name": "a.jpg"}, {"id": 1, "file_name": "b.jpg"}]), "b.jpg": IMAGE}, 3,
                 ["c.json", "images[1]", "also used by images[0]"], id="coco-image-id-duplicate"),
    pytest.param({"c.json": coco(categories=[{"id": 1, "name": "ho\nle"}])}, 3, ["c.json", "categories[0]", "field 'name'", "U+000A"],
                 id="coco-class-newline"),
    pytest.param({"c.json": coco(categories=[{"id": 1, "name": "hole<loc_5>"}])}, 3, ["c.json", "field 'name'", "token markup"],
                 id="coco-class-loc-token"),
    pytest.param({"c.json": coco(categories=[{"id": 1, "name": "   "}])}, 3, ["c.json", "field 'name'", "is empty"], id="coco-class-blank"),
    pytest.param({"c.json": coco(categories=[{"id": 1, "name": "a\u200bb"}])}, 3, ["c.json", "U+200B"], id="coco-class-zero-width"),
    pytest.param({"c.json": coco()[:40]}, 3, ["c.json", "line 1 column", "malformed JSON"], id="coco-truncated"),
    pytest.param({"c.json": coco(categories=[{"id": 1, "name": "caf\udce9"}])}, 3, ["c.json", "U+DCE9"], id="coco-class-lone-surrogate"),
    pytest.param({"c.json": coco().encode("utf-8").replace(b'"hole"', b'"h\xf4le"')}, 3, ["c.json", "line 1", "not valid UTF-8"],
                 id="coco-not-utf8"),
    pytest.param({"c.json": "[" * 100_000}, 3, ["c.json"], id="coco-deeply-nested"),
    pytest.param({"c.json": coco(images=[{"id": 1, "file_name": "../outside/o.jpg"}])}, 3, ["c.json", "escapes the dataset root"],
                 id="coco-dotdot"),
    pytest.param({"c.json": coco(images=[{"id": 1, "file_name": "o.jpg"}])}, 3, ["c.json", "images[0]", "escapes the dataset root"],
                 id="coco-sibling-images-folder"),  # the case: ../images/o.jpg via the sibling images/ lookup
    pytest.param({"c.json": coco(images=[{"id": 1, "file_name": "a\x00.jpg"}])}, 3, ["c.json", "images[0]", "field 'file_name'"],
                 id="coco-nul-in-file-name"),
    pytest.param({"c.json": coco(images=[{"id": 1, "file_name": "l.jpg"}]), "l.jpg": Link("outside/o.jpg")}, 3,
                 ["c.json", "escapes the dataset root"], id="coco-symlinked-image"),
    pytest.param({"c.json": Link("outside/c.json")}, 3, ["c.json", "escapes the dataset root"], id="coco-symlinked-json"),
    pytest.param({"c.json": coco(annotations=[{"id": 1, "image_id": 1, "category_id": 1, "bbox": ["5", 5, 15, 10]}])}, 3,
                 ["c.json", "field 'bbox'"], id="coco-bbox-strings"),
    pytest.param({"c.json": coco().replace("[5, 5, 15, 10]", "[5, 5, 1" + "0" * 400 + ", 10]")}, 3, ["c.json", "field 'bbox'"],
                 id="coco-bbox-huge-int"),
    pytest.param({"c.json": coco().replace("[5, 5, 15, 10]", "[NaN, 5, 15, 10]")}, 3, ["c.json", "field 'bbox'"], id="coco-bbox-nan"),
    pytest.param({"c.json": coco().replace("[5, 5, 15, 10]", "[5, 5, Infinity, 10]")}, 3, ["c.json", "field 'bbox'"], id="coco-bbox-inf"),
    pytest.param({"c.json": coco(annotations=[{"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 5, 15, 10],
                                               "segmentation": [["a", 1, 2, 3, 4, 5]]}])}, 3,
                 ["c.json", "field 'segmentation'"], id="coco-segmentation-strings"),
    pytest.param({"c.json": coco(annotations=[{"id": 1, "image_id": 7, "category_id": 1, "bbox": [5, 5, 15, 10]}])}, 3,
                 ["c.json", "no image with id 7"], id="coco-unknown-image"),
    pytest.param({"c.json": coco(annotations=["x"])}, 3, ["c.json", "annotations[0]", "expected an object"], id="coco-annotation-string"),
    # --- YOLO ---
    pytest.param({"data.yaml": "names: {a: hole, 1: stain}\n"}, 3, ["data.yaml", "field 'names'", "integers 0..n-1", "'a'"],
                 id="yolo-names-string-keys"),
    pytest.param({"data.yaml": "names: {true: hole}\n"}, 3, ["data.yaml", "field 'names'", "True"], id="yolo-names-bool-key"),
    pytest.param({"data.yaml": "names: {0.5: hole}\n"}, 3, ["data.yaml", "field 'names'", "0.5"], id="yolo-names-float-key"),
    pytest.param({"data.yaml": "names: {0: hole, 2: stain}\n"}, 3, ["data.yaml", "0..n-1"], id="yolo-names-gap"),
    pytest.param({"data.yaml": "names: hole\n"}, 3, ["data.yaml", "expected a list of class names"], id="yolo-names-string"),
    pytest.param({"data.yaml": "names: [hole, [x]]\n"}, 3, ["data.yaml", "expected a list of class names"], id="yolo-names-nested"),
    pytest.param({"data.yaml": "nc: [1]\nnames: [hole]\n"}, 3, ["data.yaml", "field 'nc'"], id="yolo-nc-list"),
    pytest.param({"data.yaml": "names: [hole\n"}, 3, ["data.yaml", "malformed YAML"], id="yolo-malformed-yaml"),
    pytest.param({"data.yaml": "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
                               "c: &c [*b, *b, *b, *b, *b, *b, *b]\n"
                               "d: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\nnames: [hole]\n"}, 3,
                 ["data.yaml", "line 2", "aliases"], id="yolo-yaml-billion-laughs"),
    pytest.param({"data.yaml": b"names: [h\xf4le]\n"}, 3, ["data.yaml", "line 1", "not valid UTF-8"], id="yolo-yaml-not-utf8"),
    pytest.param({"data.yaml": "names: ['ho\\nle']\n".replace("'", '"')}, 3, ["data.yaml", "names[0]", "U+000A"], id="yolo-class-newline"),
    pytest.param({"data.yaml": "names: ['<loc_5>']\n"}, 3, ["data.yaml", "names[0]", "token markup"], id="yolo-class-loc-token"),
    pytest.param({"classes.txt": "hole\n<loc_1>\n"}, 3, ["classes.txt", "line 2", "token markup"], id="yolo-classes-txt-token"),
    pytest.param({"classes.txt": b"h\xf4le\n"}, 3, ["classes.txt", "not valid UTF-8"], id="yolo-classes-txt-not-utf8"),
    pytest.param({"data.yaml": "names: [" + "x, " * 400_000 + "]\n"}, 3, ["data.yaml", "larger than 1048576"], id="yolo-yaml-oversized"),
    pytest.param({"data.yaml": "names: [hole]\n", "a.txt": b"0 0.5 0.5 0.2 0.2 \xff\n"}, 3, ["a.txt", "line 1", "not valid UTF-8"],
                 id="yolo-label-not-utf8"),
    pytest.param({"data.yaml": "names: [hole]\n", "a.txt": "0 nan 0.5 0.2 0.2\n"}, 3, ["a.txt", "line 1", "NaN"], id="yolo-label-nan"),
    pytest.param({"data.yaml": "names: [hole]\n", "a.txt": "0 0.5 0.5 inf 0.2\n"}, 3, ["a.txt", "line 1", "outside"], id="yolo-label-inf"),
    pytest.param({"data.yaml": "names: [hole]\n", "a.txt": "1e3 0.5 0.5 0.2 0.2\n"}, 3, ["a.txt", "line 1", "class_id"],
                 id="yolo-label-float-id"),
    pytest.param({"data.yaml": "names: [hole]\n", "a.txt": "9" * 5000 + " 0.5 0.5 0.2 0.2\n"}, 3, ["a.txt", "line 1", "class_id"],
                 id="yolo-label-huge-id"),
    pytest.param({"data.yaml": "names: [hole]\n", "a.txt": "0 0.5 0.5 0.2\n"}, 3, ["a.txt", "line 1", "field 'row'"],
                 id="yolo-label-short"),
    pytest.param({"data.yaml": "names: [hole]\n", "a.txt": "0 0.1 0.1 0.2 0.2 0.3\n"}, 3, ["a.txt", "line 1"], id="yolo-polygon-odd"),
    pytest.param({"data.yaml": "names: [hole]\n", "a.txt": "0 0.5 0.5 -0.2 0.2\n"}, 3, ["a.txt", "line 1", "negative size"],
                 id="yolo-negative"),
    pytest.param({"data.yaml": "names: [hole]\n", "l.jpg": Link("outside/o.jpg")}, 3, ["l.jpg", "escapes the dataset root"],
                 id="yolo-symlinked-image"),
    pytest.param({"data.yaml": "names: [hole]\n", "a.txt": Link("outside/o.txt")}, 3, ["a.txt", "escapes the dataset root"],
                 id="yolo-symlinked-label"),
    pytest.param({"data.yaml": Link("outside/data.yaml")}, 3, ["data.yaml", "escapes the dataset root"], id="yolo-symlinked-yaml"),
    pytest.param({"data.yaml": "names: [hole]\n", "a.txt": {}}, 3, ["a.txt", "not a regular file"], id="yolo-label-is-directory"),
    # --- masks ---
    pytest.param({"images/a.jpg": IMAGE, "masks/a.png": png_header_only(30000, 30000)}, 3, ["a.png", "30000x30000", "pixel budget"],
                 id="mask-30000px"),
    pytest.param({"images/a.jpg": IMAGE, "masks/a.png": png_header_only(4000, 3000)}, 3, ["a.png", "mask is 4000x3000, image is 40x30"],
                 id="mask-size-mismatch"),
    pytest.param({"images/a.jpg": IMAGE, "masks/a.png": png_header_only(40, 30)[:40]}, 3, ["a.png", "cannot decode mask"],
                 id="mask-truncated"),
    pytest.param({"images/a.jpg": IMAGE, "masks/a.png": "not a png"}, 3, ["a.png", "cannot decode mask"], id="mask-not-an-image"),
    pytest.param({"images/a.jpg": IMAGE, "masks/a.png": IMAGE, "classes.txt": b"h\xf4le\n"}, 3, ["classes.txt", "not valid UTF-8"],
                 id="mask-classes-not-utf8"),
    pytest.param({"images/a.jpg": IMAGE, "masks/a.png": IMAGE, "classes.txt": "</s>\n"}, 3, ["classes.txt", "line 1", "token markup"],
                 id="mask-classes-token"),
    pytest.param({"images/a.jpg": Link("outside/o.jpg"), "masks/a.png": IMAGE}, 3, ["a.png", "escapes the dataset root"],
                 id="mask-symlinked-image"),
    pytest.param({"images/a.jpg": IMAGE, "masks/a.png": Link("outside/m.png")}, 3, ["a.png", "escapes the dataset root"],
                 id="mask-symlinked-mask"),
    pytest.param({"images/b.jpg": IMAGE, "masks/b.png": IMAGE}, 2, ["--mask-class", "token markup"], id="mask-class-option-token"),
    # --- Florence JSONL ---
    pytest.param({"annotations.jsonl": jsonl(OD, '{"image": "a.jpg", "prefix": "<DENSE'), "b.jpg": IMAGE}, 3,
                 ["annotations.jsonl", "line 2", "malformed JSON"], id="jsonl-truncated-line"),
    pytest.param({"annotations.jsonl": jsonl(OD).encode() + b'{"image": "\xff"}\n'}, 3, ["annotations.jsonl", "line 2", "not valid UTF-8"],
                 id="jsonl-not-utf8"),
    pytest.param({"annotations.jsonl": jsonl({**OD, "image": "../outside/o.jpg"})}, 3, ["annotations.jsonl", "line 1", "escapes"],
                 id="jsonl-dotdot"),
    pytest.param({"annotations.jsonl": jsonl({**OD, "image": "l.jpg"}), "l.jpg": Link("outside/o.jpg")}, 3,
                 ["annotations.jsonl", "line 1", "escapes the dataset root"], id="jsonl-symlinked-image"),
    pytest.param({"annotations.jsonl": Link("outside/annotations.jsonl")}, 3, ["annotations.jsonl", "escapes the dataset root"],
                 id="jsonl-symlinked-file"),
    pytest.param({"annotations.jsonl": jsonl({**OD, "suffix": "ho\nle<loc_1><loc_1><loc_500><loc_500>"})}, 3,
                 ["annotations.jsonl", "line 1", "field 'suffix'", "U+000A"], id="jsonl-class-newline"),
    pytest.param({"annotations.jsonl": jsonl({**OD, "suffix": "a>b<loc_1><loc_1><loc_500><loc_500>"})}, 3,
                 ["annotations.jsonl", "field 'suffix'", "'>'"], id="jsonl-class-gt"),
    pytest.param({"annotations.jsonl": jsonl({**OD, "suffix": "hole<loc_1><loc_1><loc_500><loc_1000>"})}, 3,
                 ["annotations.jsonl", "line 1", "loc value 1000"], id="jsonl-loc-1000"),
    pytest.param({"annotations.jsonl": jsonl({**OD, "suffix": "hole<loc_1><loc_1><loc_500>"})}, 3,
                 ["annotations.jsonl", "line 1", "3 loc tokens"], id="jsonl-three-locs"),
    pytest.param({"annotations.jsonl": jsonl({**OD, "suffix": "hole<loc_" + "9" * 5000 + "><loc_1><loc_2><loc_3>"})}, 3,
                 ["annotations.jsonl", "line 1", "field 'suffix'"], id="jsonl-huge-loc"),
    pytest.param({"annotations.jsonl": jsonl({**OD, "suffix": "a" * 300_000})}, 3, ["annotations.jsonl", "line 1", "cannot parse"],
                 id="jsonl-long-suffix-without-boxes"),
    pytest.param({"annotations.jsonl": jsonl({**OD, "prefix": "<OCR>"})}, 3, ["annotations.jsonl", "line 1", "unknown task prompt"],
                 id="jsonl-unknown-task"),
    pytest.param({"annotations.jsonl": jsonl(OD, {**OD, "prefix": "<CAPTION_TO_PHRASE_GROUNDING>a <loc_5> b"})}, 3,
                 ["annotations.jsonl", "line 2", "field 'prefix'", "token markup"], id="jsonl-caption-token"),
    pytest.param({"annotations.jsonl": jsonl(OD, OD)}, 3, ["annotations.jsonl", "line 2", "duplicate od record"], id="jsonl-duplicate"),
    pytest.param({"annotations.jsonl": jsonl({**OD, "image": 5})}, 3, ["annotations.jsonl", "line 1", "field 'image'"],
                 id="jsonl-image-int"),
    pytest.param({"annotations.jsonl": jsonl({**OD, "image": "a\x00.jpg"})}, 3, ["annotations.jsonl", "line 1", "field 'image'"],
                 id="jsonl-nul-image"),
    pytest.param({"annotations.jsonl": "[" * 100_000 + "\n"}, 3, ["annotations.jsonl", "line 1"], id="jsonl-deeply-nested"),
    pytest.param({"annotations.jsonl": jsonl("[1, 2]")}, 3, ["annotations.jsonl", "line 1", "expected a JSON object"],
                 id="jsonl-array-line"),
]


def _source(tmp_path: Path, files: dict[str, object]) -> Path:
    """``src/`` with an image ``a.jpg`` (unless the case brings its own images/) and the case's files; ``outside/`` beside it."""
    write_tree(tmp_path / "outside", {
        "o.jpg": IMAGE, "m.png": IMAGE, "o.xml": voc(filename="o.jpg"),
        "o.txt": "0 0.5 0.5 0.2 0.2\n", "c.json": coco(), "data.yaml": "names: [hole]\n", "annotations.jsonl": jsonl(OD),
    })
    write_tree(tmp_path / "images", {"o.jpg": IMAGE})  # a sibling images/ folder, for COCO's lookup beside the root
    src = tmp_path / "src"
    spec = {k: (Link(f"../{v.target}") if isinstance(v, Link) else v) for k, v in files.items()}
    if not any(k.startswith("images/") for k in files):
        spec.setdefault("a.jpg", IMAGE)
    write_tree(src, spec)
    return src


@hostile
@pytest.mark.parametrize(("files", "code", "fragments"), REJECTED)
def test_hostile_label_folder_is_refused_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], files: dict, code: int, fragments: list[str]
) -> None:
    src = _source(tmp_path, files)
    before, out = digest(src), tmp_path / "out"
    previous = existing_dataset(out)
    extra = ("--mask-class", "a<b>") if "mask-class" in " ".join(fragments) else ()
    exit_code, message = build(capsys, src, out, *extra)
    assert exit_code == code, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert "Traceback" not in message and "internal error" not in message
    assert digest(src) == before  # the source is untouched
    assert digest(out) == previous  # the existing dataset is untouched
    assert not list(tmp_path.glob(".out.*"))  # no staging or retired folder left behind


SECRET = "TOP-SECRET-9f1c"


@hostile
@pytest.mark.parametrize("where", ["name", "description", "caption"])
def test_xml_external_entities_are_never_expanded(tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str) -> None:
    """An XXE pointing at a local file: the file's content reaches neither the message nor the built dataset."""
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    head = XXE.format(secret=secret)
    xml = {"name": voc(name="&xxe;", head=head), "description": voc(extra="<description>&xxe;</description>", head=head),
           "caption": voc(tail="<caption>&xxe;</caption>", head=head)}[where]
    src = _source(tmp_path, {"a.xml": xml})
    out = tmp_path / "out"
    code, message = run_cli_plain(capsys, src, out)
    assert SECRET not in message
    if where == "name":
        assert code == 3 and "a.xml" in message and "missing <name>" in message
    else:  # an unexpanded entity leaves an empty optional field: the image imports without it
        assert code == 0, message
        assert all(SECRET not in p.read_text(errors="replace") for p in out.rglob("*.json*"))


def run_cli_plain(capsys: pytest.CaptureFixture[str], src: Path, out: Path) -> tuple[int, str]:
    capsys.readouterr()
    code, message = build(capsys, src, out)
    return code, message


ACCEPTED = [
    pytest.param({"a.xml": voc("tache br\u00fbl\u00e9e", head='<?xml version="1.0" encoding="ISO-8859-1"?>').encode("latin-1")},
                 ["tache br\u00fbl\u00e9e"], id="voc-latin1-declared"),
    pytest.param({"a.xml": voc("hole", head='<?xml version="1.0" encoding="UTF-16"?>').encode("utf-16")}, ["hole"], id="voc-utf16-bom"),
    pytest.param({"a.xml": b"\xef\xbb\xbf" + voc("hole").encode()}, ["hole"], id="voc-utf8-bom"),
    pytest.param({"a.xml": voc("  hole  "), "x.xml": {}}, ["hole"], id="voc-xml-directory-and-padded-name"),
    pytest.param({"c.json": coco(categories=[{"id": 1, "name": " hole ", "supercategory": ["x"]}])}, ["hole"], id="coco-odd-supercategory"),
    pytest.param({"data.yaml": "names: {1: stain, 0: hole}\n", "a.txt": "1 0.5 0.5 0.2 0.2\n"}, ["hole", "stain"], id="yolo-names-dict"),
    pytest.param({"annotations.jsonl": jsonl({**OD, "suffix": "tache br\u00fbl\u00e9e<loc_125><loc_166><loc_500><loc_500>"})},
                 ["tache br\u00fbl\u00e9e"], id="jsonl-unicode-class"),
]


@hostile
@pytest.mark.parametrize(("files", "classes"), ACCEPTED)
def test_odd_but_valid_label_folders_build(tmp_path: Path, capsys: pytest.CaptureFixture[str], files: dict, classes: list[str]) -> None:
    src = _source(tmp_path, files)
    out = tmp_path / "out"
    code, message = build(capsys, src, out)
    assert code == 0, message
    assert json.loads((out / "dataset.json").read_text(encoding="utf-8"))["classes"] == classes


# --- labels as plants have them (issue 15): each case a folder tree under the test's tmp_path (links relative to it) ---
YAML_1_BASED = "nc: 2\nnames: [cut, hole]\n"
ONE_BASED = {
    "src/data.yaml": YAML_1_BASED,
    "src/train/images/a.jpg": IMAGE,
    "src/train/labels/a.txt": "1 0.5 0.5 0.2 0.2\n2 0.2 0.2 0.1 0.1\n",
    "src/valid/images/b.jpg": IMAGE,
    "src/valid/labels/b.txt": "2 0.5 0.5 0.2 0.2\n",
}
NAS = {
    "nas/train/a.jpg": IMAGE,
    "nas/train/a.txt": "0 0.5 0.5 0.2 0.2\n",
    "nas/valid/b.jpg": IMAGE,
    "nas/valid/b.txt": "1 0.5 0.5 0.2 0.2\n",
}
ZERO_BASED = {"src/data.yaml": YAML_1_BASED, "src/a.jpg": IMAGE, "src/a.txt": "0 0.5 0.5 0.2 0.2\n"}

PLANT = [
    pytest.param(ONE_BASED, (), 3, ["data.yaml", "1-based", "--class-map '1:cut,2:hole'"], id="yolo-one-based-export"),
    pytest.param(ONE_BASED, ("--skip-invalid",), 3, ["1-based", "--class-map '1:cut,2:hole'"], id="yolo-one-based-skip-invalid"),
    pytest.param(ONE_BASED, ("--class-map", "1:cut,2:hole"), 0, ["cut", "hole"], id="yolo-one-based-with-class-map"),
    pytest.param(ONE_BASED, ("--class-map", "1:cut"), 3, ["a.txt", "line 2", "id 2", "not in the class map"], id="class-map-missing-id"),
    pytest.param(ONE_BASED, ("--class-map", "1:cut,2:hole", "--skip-invalid"), 0, ["cut", "hole"], id="class-map-and-skip-invalid"),
    pytest.param(ONE_BASED, ("--class-map", "cut"), 2, ["--class-map cut", "no such file"], id="class-map-not-pairs"),
    pytest.param(ONE_BASED, ("--class-map", "1:a<b"), 2, ["--class-map", "'<'"], id="class-map-token-in-name"),
    pytest.param(
        {**ONE_BASED, "m.yaml": "1: cut\n2: {x: 1}\n"},
        ("--class-map", "{tmp}/m.yaml"),
        2,
        ["m.yaml", "line 2"],
        id="class-map-file-bad-entry",
    ),
    pytest.param(
        {"config/data.yaml": "names: [cut, hole]\n", "src/a.jpg": IMAGE, "src/a.txt": "1 0.5 0.5 0.2 0.2\n"},
        (),
        0,
        ["cut", "hole"],
        id="yolo-data-yaml-in-sibling-config",
    ),
    pytest.param(
        {"src/a.jpg": IMAGE, "src/a.txt": "1 0.5 0.5 0.2 0.2\n"},
        ("--data-yaml", "{tmp}/nowhere.yaml"),
        2,
        ["--data-yaml", "no such file"],
        id="yolo-data-yaml-missing",
    ),
    pytest.param(
        {**NAS, "src/data.yaml": YAML_1_BASED, "src/train": Link("nas/train"), "src/valid": Link("nas/valid")},
        (),
        0,
        ["cut", "hole"],
        id="yolo-linked-split-folders",
    ),
    pytest.param(
        {**ZERO_BASED, "src/extra": Link("nas/train"), "nas/train/x.jpg": IMAGE},
        (),
        3,
        ["extra", "outside the dataset root", "whole split"],
        id="folder-link-out-of-the-root",
    ),
    pytest.param({**ZERO_BASED, "src/train": Link("")}, (), 3, ["train", "holds the dataset itself"], id="split-link-loop"),
    pytest.param({**ZERO_BASED, "src/train": Link("gone")}, (), 3, ["train", "not a folder"], id="split-link-dangling"),
    pytest.param(
        {
            **NAS,
            "src/data.yaml": YAML_1_BASED,
            "src/train": Link("nas/train"),
            "nas/train/s.jpg": Link("private/s.jpg"),
            "private/s.jpg": IMAGE,
        },
        (),
        3,
        ["s.jpg", "escapes the dataset root"],
        id="file-link-out-of-a-linked-split",
    ),
    pytest.param({"src/data.yaml": YAML_1_BASED}, (), 3, ["no image imported"], id="source-without-images"),
    pytest.param(
        {**ZERO_BASED, "src/a.txt": "7 0.5 0.5 0.2 0.2\n"},
        ("--skip-invalid",),
        3,
        ["no image imported", "skipped"],
        id="every-image-skipped",
    ),
    pytest.param(ZERO_BASED, ("--split", "0.7,0.3"), 2, ["--split 0.7,0.3", "three shares"], id="split-two-shares"),
    pytest.param(ZERO_BASED, ("--split", "0.7,0.2,0.2"), 2, ["dataset.splits", "must be 1.0"], id="split-not-summing-to-one"),
]


@hostile
@pytest.mark.parametrize(("files", "extra", "code", "fragments"), PLANT)
def test_plant_exports_fail_clearly_or_import_correctly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], files: dict, extra: tuple[str, ...], code: int, fragments: list[str]
) -> None:
    write_tree(tmp_path, files)
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir(exist_ok=True)
    exit_code, message = build(capsys, src, out, *(e.replace("{tmp}", str(tmp_path)) for e in extra))
    assert exit_code == code, message
    if code:
        for fragment in fragments:
            assert fragment in message, f"{fragment!r} not in {message!r}"
        assert "Traceback" not in message and not out.exists()
    else:
        assert json.loads((out / "dataset.json").read_text(encoding="utf-8"))["classes"] == fragments

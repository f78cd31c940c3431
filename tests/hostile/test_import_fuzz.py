"""Property-based fuzzing of every importer (issue 12): random and mutated label files either import into valid
boxes inside their image, or are refused with the typed error naming the file; never another exception, never a hang."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from inspect_core.data.annotations import text_problem
from inspect_core.data.importers import import_dataset
from inspect_core.errors import BadInputError
from tests.conftest import write_image

QUICK, LONG = 60, 400
FUZZ = settings(deadline=5000, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], database=None)

NUMBER = st.one_of(st.integers(-50, 80), st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["x", "", "1e400", "-0", "0x1"]))
TEXT = st.one_of(st.sampled_from(["hole", "stain", " hole ", "<loc_5>", "a\nb", "</s>", "a>b", "", "tache brûlée"]), st.text(max_size=12))
JSON_VALUE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=False), st.text(max_size=6)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=4), inner, max_size=3)), max_leaves=8,
)


def mutate(data: bytes, draw) -> bytes:
    """Leave the file alone, truncate it, or overwrite a few bytes with random ones."""
    how = draw(st.sampled_from(["keep", "keep", "truncate", "flip"]))
    if how == "truncate" and data:
        return data[: draw(st.integers(0, len(data) - 1))]
    if how == "flip" and data:
        data = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    return data


def check_import(root: Path, fmt: str, label_files: list[str]) -> None:
    """The property: valid boxes inside the image with clean text, or a BadInputError naming a label file (or the folder)."""
    try:
        result = import_dataset(root, fmt)
    except BadInputError as error:
        text = str(error)
        assert any(name in text for name in [*label_files, str(root)]), text
        return
    for image in result.images:
        for obj in image.objects:
            x1, y1, x2, y2 = obj.box
            assert 0 <= x1 < x2 <= image.width and 0 <= y1 < y2 <= image.height, (obj, image.width, image.height)
            assert text_problem(obj.label) is None and (obj.description is None or text_problem(obj.description) is None)
    assert all(text_problem(c) is None for c in result.classes)


@st.composite
def voc_files(draw) -> bytes:
    objects = "".join(
        f"<object><name>{escape(draw(TEXT))}</name><bndbox>"
        + "".join(f"<{t}>{escape(str(draw(NUMBER)))}</{t}>" for t in ("xmin", "ymin", "xmax", "ymax"))
        + "</bndbox></object>"
        for _ in range(draw(st.integers(0, 3)))
    )
    filename = draw(st.sampled_from(["a.jpg", "a.jpg", "../a.jpg", "/a.jpg", "b.jpg", ""]))
    size = draw(st.sampled_from(["", "<size><width>40</width><height>30</height></size>", "<size><width>nan</width></size>"]))
    return mutate(f"<annotation><filename>{filename}</filename>{size}{objects}</annotation>".encode(), draw)


def _voc(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_image(root / "a.jpg", 40, 30)
        (root / "a.xml").write_bytes(data)
        check_import(root, "voc", ["a.xml"])


@st.composite
def coco_files(draw) -> bytes:
    def value(good: object) -> object:
        return draw(st.one_of(st.just(good), JSON_VALUE))

    data = {
        "images": [{"id": value(1), "file_name": value(draw(st.sampled_from(["a.jpg", "../a.jpg", "a\x00.jpg"])))}],
        "annotations": [
            {"id": i, "image_id": value(1), "category_id": value(1), "bbox": value([draw(NUMBER) for _ in range(4)]),
             "segmentation": value([[draw(NUMBER) for _ in range(6)]])}
            for i in range(draw(st.integers(0, 3)))
        ],
        "categories": [{"id": value(1), "name": draw(TEXT), "supercategory": value("none")}],
    }
    if draw(st.booleans()):
        data[draw(st.sampled_from(["images", "annotations", "categories"]))] = draw(JSON_VALUE)
    return mutate(json.dumps(data).encode(), draw)


def _coco(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_image(root / "a.jpg", 40, 30)
        (root / "c.json").write_bytes(data)
        check_import(root, "coco", ["c.json"])


TOKENS = st.sampled_from(["0", "1", "2", "-1", "0.5", "0.2", "0.9", "nan", "inf", "1e400", "x", "0.0", "1.5", "1e3"])


@st.composite
def yolo_files(draw) -> tuple[bytes, bytes]:
    names = draw(st.one_of(
        st.lists(TEXT, max_size=3).map(json.dumps),
        st.dictionaries(st.one_of(st.integers(-1, 3), st.text(max_size=2), st.booleans()), TEXT, max_size=3).map(
            lambda d: "{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in d.items()) + "}"),
        st.text(max_size=10),
    ))
    yaml_text = b"names: [hole]\n"
    if draw(st.booleans()):
        yaml_text = mutate(f"nc: {draw(st.integers(0, 3))}\nnames: {names}\n".encode(), draw)
    rows = [" ".join(draw(st.lists(TOKENS, min_size=0, max_size=9))) for _ in range(draw(st.integers(0, 3)))]
    return yaml_text, mutate("\n".join(rows).encode(), draw)


def _yolo(files: tuple[bytes, bytes]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_image(root / "a.jpg", 40, 30)
        (root / "data.yaml").write_bytes(files[0])
        (root / "a.txt").write_bytes(files[1])
        check_import(root, "yolo", ["data.yaml", "a.txt"])


PIECES = st.sampled_from(["hole", "stain", "<loc_0>", "<loc_500>", "<loc_999>", "<loc_1000>", "<loc_", ">", "<", "\n", " ", "é"])


@st.composite
def jsonl_files(draw) -> bytes:
    lines = []
    for _ in range(draw(st.integers(1, 3))):
        record = {
            "image": draw(st.sampled_from(["a.jpg", "a.jpg", "../a.jpg", "missing.jpg", ""])),
            "prefix": draw(st.sampled_from(["<OD>", "<DENSE_REGION_CAPTION>", "<CAPTION_TO_PHRASE_GROUNDING>fabric", "<OCR>", ""]))
            + draw(st.sampled_from(["", "", " a <loc_3>", "\n"])),
            "suffix": "".join(draw(st.lists(PIECES, max_size=12))),
        }
        lines.append(json.dumps(record) if draw(st.integers(0, 9)) else json.dumps(draw(JSON_VALUE)))
    return mutate("\n".join(lines).encode(), draw)


def _jsonl(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_image(root / "a.jpg", 40, 30)
        (root / "annotations.jsonl").write_bytes(data)
        check_import(root, "jsonl", ["annotations.jsonl"])


@st.composite
def mask_files(draw) -> tuple[bytes, bytes]:
    width, height = draw(st.sampled_from([(40, 30), (40, 30), (30, 40), (1, 1)]))
    values = draw(st.lists(st.sampled_from([0, 0, 1, 2, 7, 255]), min_size=3, max_size=3))
    pixels = np.zeros((height, width), dtype=np.uint8)
    for value, (x, y) in zip(values, [(2, 2), (15, 10), (30, 20)]):
        pixels[y : y + draw(st.integers(0, 8)), x : x + draw(st.integers(0, 8))] = value
    from io import BytesIO

    buffer = BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    classes = "\n".join(draw(st.lists(TEXT, max_size=3))).encode() if draw(st.booleans()) else b""
    return mutate(buffer.getvalue(), draw), classes


def _masks(files: tuple[bytes, bytes]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_image(root / "images/a.jpg", 40, 30)
        (root / "masks").mkdir()
        (root / "masks/a.png").write_bytes(files[0])
        if files[1]:
            (root / "classes.txt").write_bytes(files[1])
        check_import(root, "masks", ["a.png", "classes.txt"])


FUZZERS = {"voc": (voc_files, _voc), "coco": (coco_files, _coco), "yolo": (yolo_files, _yolo), "jsonl": (jsonl_files, _jsonl),
           "masks": (mask_files, _masks)}


def _fuzz_test(name: str, examples: int):
    strategy, check = FUZZERS[name]

    @pytest.mark.hostile_input(examples=examples)
    @settings(FUZZ, max_examples=examples)
    @given(strategy())
    def test(data: object) -> None:
        check(data)

    test.__name__ = f"test_fuzz_{name}_{examples}"
    return test


for _name in FUZZERS:
    globals()[f"test_fuzz_{_name}_quick"] = _fuzz_test(_name, QUICK)
    globals()[f"test_fuzz_{_name}_long"] = pytest.mark.slow(_fuzz_test(_name, LONG))

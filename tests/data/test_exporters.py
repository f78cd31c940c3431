"""Exports of reviewed frames (issue 14): a VOC batch that the dataset build imports with exactly the reviewed boxes,
and a Label Studio import in the documented shape (https://labelstud.io/guide/predictions).

The oracle is the list of review actions each test makes (``REVIEWED``), never the export code's own reading of them.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import jsonschema
import pytest
from lxml import etree

from inspect_core.config import AugmentSection, DatasetSection, SplitRatios
from inspect_core.data.exporters import default_batch, write_label_studio, write_voc_batch
from inspect_core.data.sources import import_and_build, import_sources
from inspect_core.store import ReportFilter
from inspect_core.store.reviews import ReviewAction, prelabelled_frames, record_review, record_reviews, reviewed_frames
from tests.conftest import write_image
from tests.store.review_seed import DETECTIONS, HEIGHT, WIDTH, ReviewStore, operating, seed_review_store

# What the reviews below make each exported image hold: (class, pixel box), exactly.
REVIEWED = {
    "f1": [("hole", (10.0, 10.0, 50.0, 40.0)), ("slub", (60.5, 10.25, 90.75, 30.0))],  # accepted + drawn (m1, the latest review)
    "f2": [("oil", (20.0, 30.0, 60.0, 70.0))],  # relabelled
    "f3": [],  # marked clean
    "f5": [],  # its one box rejected
}


def review_everything(store: ReviewStore) -> None:
    """The reviews behind REVIEWED, plus a partial frame (f4) and an earlier review of f1 under m2 that the later one wins over."""
    e, img, m1, m2 = store.engine, store.image_ids, store.model_ids["m1"], store.model_ids["m2"]
    record_review(e, img["f1"], m2, "cem", "accept", seen_version=0, detection_id=store.detection_ids("f1", "m2")["hole", 0.32])
    hole = store.detection_ids("f1", "m1")["hole", 0.85]
    record_reviews(e, img["f1"], m1, "ayse", [ReviewAction("accept", detection_id=hole),
                                              ReviewAction("add", class_name="slub", box=(60.5, 10.25, 90.75, 30.0))], 0)  # fmt: skip
    stain = store.detection_ids("f2", "m1")["stain", 0.7]
    record_review(e, img["f2"], m1, "ayse", "relabel", seen_version=0, detection_id=stain, class_name="oil")
    record_review(e, img["f3"], m1, "bora", "clean", seen_version=0)
    record_review(e, img["f4"], m1, "bora", "add", seen_version=0, class_name="hole", box=(1, 1, 9, 9))  # its knot undecided: partial
    record_review(e, img["f5"], m2, "bora", "reject", seen_version=0, detection_id=store.detection_ids("f5", "m2")["stain", 0.9])


@pytest.fixture
def reviewed(store_url: str, tmp_path: Path) -> ReviewStore:
    store = seed_review_store(store_url, tmp_path)
    review_everything(store)
    return store


def test_a_voc_batch_imports_back_with_exactly_the_reviewed_boxes_and_builds(reviewed: ReviewStore, tmp_path: Path) -> None:
    batch = tmp_path / "labelled" / "2026-11-21"
    result = write_voc_batch(reviewed_frames(reviewed.engine), batch)
    assert result.out == batch and result.frames == 4 and result.clean_frames == 2
    assert result.boxes == {"hole": 1, "oil": 1, "slub": 1} and result.linked + result.copied == 4
    assert [(Path(image).name, why.split(":")[0]) for image, why in result.skipped] == [("f4.png", "partially reviewed")]

    imported = import_sources([batch], DatasetSection(format="voc"))  # what dataset build and nightly retraining read
    by_sha = {image.sha256: sorted((o.label, o.box) for o in image.objects) for image in imported.images}
    assert by_sha == {reviewed.shas[name]: sorted(boxes) for name, boxes in REVIEWED.items()}
    assert all((image.width, image.height) == (WIDTH, HEIGHT) for image in imported.images)

    built = import_and_build([batch], tmp_path / "built", DatasetSection(format="voc", tasks=["od"], workers=1,
                             splits=SplitRatios(train=0.5, valid=0.5, test=0.0)), AugmentSection(online=False))  # fmt: skip
    objects = Counter()
    for split in built.splits.values():
        objects.update(split.objects)
    assert dict(objects) == {"hole": 1, "oil": 1, "slub": 1}
    assert sum(s.images for s in built.splits.values()) == 4 and sum(s.clean_images for s in built.splits.values()) == 2


def test_the_voc_xml_is_labelimg_shaped_and_the_images_are_hard_links(reviewed: ReviewStore, tmp_path: Path) -> None:
    batch = tmp_path / "batch"
    write_voc_batch(reviewed_frames(reviewed.engine), batch)
    [xml] = [p for p in batch.glob("*.xml") if p.stem.startswith("f1-")]
    root = etree.parse(str(xml)).getroot()
    assert root.tag == "annotation" and root.findtext("filename") == xml.with_suffix(".png").name
    assert (root.findtext("size/width"), root.findtext("size/height")) == ("200", "100")
    assert [(o.findtext("name"), o.findtext("bndbox/xmax")) for o in root.findall("object")] == [("hole", "50.0"), ("slub", "90.75")]
    image = xml.with_suffix(".png")
    assert os.stat(image).st_ino == os.stat(reviewed.frames / "f1.png").st_ino  # linked, not copied
    copied = write_voc_batch(reviewed_frames(reviewed.engine), tmp_path / "copied", link=False)
    assert copied.copied == 4 and copied.linked == 0
    assert os.stat(next((tmp_path / "copied").glob("f1-*.png"))).st_ino != os.stat(reviewed.frames / "f1.png").st_ino


def test_an_existing_batch_is_replaced_only_with_overwrite_and_never_half_written(reviewed: ReviewStore, tmp_path: Path) -> None:
    batch = tmp_path / "batch"
    frames = reviewed_frames(reviewed.engine)
    write_voc_batch(frames, batch)
    (batch / "marker.txt").write_text("old")
    with pytest.raises(FileExistsError, match="already exists; pass --overwrite"):
        write_voc_batch(frames, batch)
    assert (batch / "marker.txt").exists()
    write_voc_batch(frames, batch, overwrite=True)
    assert not (batch / "marker.txt").exists() and len(list(batch.glob("*.xml"))) == 4
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging folder left behind


def test_frames_whose_image_is_gone_or_changed_are_left_out_with_the_reason(reviewed: ReviewStore, tmp_path: Path) -> None:
    (reviewed.frames / "f2.png").unlink()
    write_image(reviewed.frames / "f3.png", width=WIDTH, height=HEIGHT, seed=99)  # another picture under the scored name
    result = write_voc_batch(reviewed_frames(reviewed.engine), tmp_path / "batch")
    reasons = {Path(image).name: why for image, why in result.skipped}
    assert "not found" in reasons["f2.png"] and "changed since it was scored" in reasons["f3.png"]
    assert result.frames == 2 and sorted(p.stem.split("-")[0] for p in (tmp_path / "batch").glob("*.xml")) == ["f1", "f5"]


def test_nothing_reviewed_writes_nothing(store_url: str, tmp_path: Path) -> None:
    store = seed_review_store(store_url, tmp_path)
    result = write_voc_batch(reviewed_frames(store.engine), tmp_path / "batch")
    assert result.out is None and result.frames == 0 and not (tmp_path / "batch").exists()


def test_default_batches_sit_directly_under_the_labelled_root(tmp_path: Path) -> None:
    from datetime import date

    from inspect_core.training.retraining import new_labelled_batches

    assert default_batch("voc", date(2026, 11, 21)) == Path("labelled/2026-11-21")
    assert default_batch("label-studio", date(2026, 11, 21)) == Path("label-studio/2026-11-21")
    (tmp_path / default_batch("voc")).mkdir(parents=True)
    (tmp_path / "labelled" / ".2026-11-22.partial-1").mkdir()  # a batch being written is not taken
    assert new_labelled_batches(tmp_path / "labelled", None) == [tmp_path / default_batch("voc")]


# The documented shape of a task with predictions (https://labelstud.io/guide/predictions), as a JSON schema.
RECTANGLE = {
    "type": "object",
    "required": ["id", "type", "from_name", "to_name", "original_width", "original_height", "value"],
    "properties": {
        "id": {"type": "string"}, "type": {"const": "rectanglelabels"}, "from_name": {"const": "label"}, "to_name": {"const": "image"},
        "original_width": {"type": "integer"}, "original_height": {"type": "integer"}, "image_rotation": {"const": 0},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "value": {
            "type": "object", "required": ["x", "y", "width", "height", "rectanglelabels"],
            "properties": {**{k: {"type": "number", "minimum": 0, "maximum": 100} for k in ("x", "y", "width", "height")},
                           "rotation": {"const": 0},
                           "rectanglelabels": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 1}},
        },
    },
}  # fmt: skip
TASKS = {
    "type": "array",
    "items": {
        "type": "object", "required": ["data"],
        "properties": {
            "data": {"type": "object", "required": ["image"], "properties": {"image": {"type": "string"}}},
            "predictions": {"type": "array", "items": {"type": "object", "required": ["model_version", "result"],
                            "properties": {"model_version": {"type": "string"}, "score": {"type": "number"},
                                           "result": {"type": "array", "items": RECTANGLE}}}},
            "annotations": {"type": "array", "items": {"type": "object", "required": ["result"],
                            "properties": {"result": {"type": "array", "items": RECTANGLE}}}},
        },
    },
}  # fmt: skip


def test_label_studio_tasks_carry_the_operating_detections_as_predictions_in_percent(reviewed: ReviewStore, tmp_path: Path) -> None:
    out = tmp_path / "ls"
    result = write_label_studio(prelabelled_frames(reviewed.engine, ReportFilter()), out)
    tasks = json.loads((out / "tasks.json").read_text())
    jsonschema.validate(tasks, TASKS)
    assert result.frames == len(tasks) == 7  # one task per image, whichever models scored it
    names = {v: k for k, v in reviewed.image_ids.items()}
    for task in tasks:
        image = names[task["data"]["inspect_image_id"]]
        assert task["data"]["image"].startswith("/data/local-files/?d=images/")
        assert (out / task["data"]["image"].split("?d=")[1]).is_file()
        got = sorted((p["model_version"], r["value"]["rectanglelabels"][0], round(r["score"], 6),
                      tuple(round(r["value"][k], 6) for k in ("x", "y", "width", "height")))
                     for p in task.get("predictions", []) for r in p["result"])  # fmt: skip
        want = sorted((model, c, round(conf, 6), (round(x1 / 2, 6), round(y1, 6), round((x2 - x1) / 2, 6), round(y2 - y1, 6)))
                      for (name, model), found in DETECTIONS.items() if name == image
                      for c, conf, (x1, y1, x2, y2) in found if operating(name, model, c, conf))  # fmt: skip
        assert got == want, image  # 200 x 100 px: x percent = px / 2, y percent = px
        for prediction in task.get("predictions", []):
            assert prediction["score"] == min(r["score"] for r in prediction["result"])
        if image in REVIEWED:
            [annotation] = task["annotations"]
            labels = sorted((r["value"]["rectanglelabels"][0], round(r["value"]["x"] * 2, 6)) for r in annotation["result"])
            assert labels == sorted((label, round(box[0], 6)) for label, box in REVIEWED[image])
        else:
            assert "annotations" not in task
    config = etree.parse(str(out / "label_config.xml")).getroot()
    assert config.find("Image").get("name") == "image" and config.find("RectangleLabels").get("toName") == "image"
    assert sorted(label.get("value") for label in config.iter("Label")) == ["hole", "knot", "oil", "slub", "stain"]


def test_label_studio_export_follows_the_filter(reviewed: ReviewStore, tmp_path: Path) -> None:
    result = write_label_studio(prelabelled_frames(reviewed.engine, ReportFilter(class_name="knot")), tmp_path / "ls")
    [task] = json.loads((tmp_path / "ls" / "tasks.json").read_text())
    assert result.frames == 1 and task["data"]["inspect_image_id"] == reviewed.image_ids["f4"]
    assert [r["value"]["rectanglelabels"] for p in task["predictions"] for r in p["result"]] == [["knot"]]

from pathlib import Path

import pytest

from inspect_core.data.annotations import AnnotatedImage, DefectObject
from inspect_core.data.florence_tasks import caption_for, parse_target, task_record


def _image(objects=(), caption=None) -> AnnotatedImage:
    return AnnotatedImage(Path("a.jpg"), 1000, 500, tuple(objects), caption=caption)


HOLE = DefectObject("hole", (100, 100, 200, 150), description="small dark hole")
STAIN = DefectObject("stain", (10, 300, 50, 400), description="oily stain")
STAIN2 = DefectObject("stain", (600, 20, 700, 60), description="oily stain")


def test_od_target_lists_classes_with_boxes_in_reading_order() -> None:
    record = task_record(_image([STAIN, HOLE]), "od", "a.jpg")
    assert record.prefix == "<OD>"
    assert record.suffix == "hole<loc_100><loc_200><loc_200><loc_300>stain<loc_10><loc_600><loc_50><loc_800>"


def test_dense_target_uses_descriptions() -> None:
    record = task_record(_image([HOLE]), "dense", "a.jpg")
    assert record.prefix == "<DENSE_REGION_CAPTION>"
    assert record.suffix.startswith("small dark hole<loc_100>")


def test_grounding_takes_the_caption_as_input_and_groups_repeated_phrases() -> None:
    image = _image([STAIN, HOLE, STAIN2], caption="twill fabric with oily stain and small dark hole")
    record = task_record(image, "grounding", "a.jpg")
    assert record.prefix == "<CAPTION_TO_PHRASE_GROUNDING>twill fabric with oily stain and small dark hole"
    assert record.suffix == (
        "oily stain<loc_600><loc_40><loc_700><loc_120><loc_10><loc_600><loc_50><loc_800>small dark hole<loc_100><loc_200><loc_200><loc_300>"
    )
    assert task_record(_image([]), "grounding", "a.jpg") is None


def test_caption_is_composed_when_the_source_has_none() -> None:
    assert caption_for(_image([HOLE, STAIN])) == "fabric with small dark hole and oily stain"
    assert caption_for(_image([])) == "fabric with no visible defects"


def test_targets_are_deterministic_whatever_the_input_order() -> None:
    forward = task_record(_image([HOLE, STAIN, STAIN2]), "od", "a.jpg")
    backward = task_record(_image([STAIN2, STAIN, HOLE]), "od", "a.jpg")
    assert forward == backward


def test_parse_target_round_trips_and_rejects_bad_suffixes() -> None:
    record = task_record(_image([STAIN, HOLE]), "od", "a.jpg")
    assert parse_target(record.suffix) == [("hole", [(100, 200, 200, 300)]), ("stain", [(10, 600, 50, 800)])]
    assert parse_target("") == []
    with pytest.raises(ValueError, match="loc value 1000"):
        parse_target("hole<loc_1><loc_2><loc_3><loc_1000>")
    with pytest.raises(ValueError, match="3 loc tokens"):
        parse_target("hole<loc_1><loc_2><loc_3>")
    with pytest.raises(ValueError, match="cannot parse"):
        parse_target("hole<loc_1><loc_2><loc_3><loc_4>stain")
    with pytest.raises(ValueError, match="no label text"):
        parse_target("<loc_1><loc_2><loc_3><loc_4>")
